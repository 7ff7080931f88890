"""The process's memory: how much it holds (for the ``-v`` step log) and giving freed memory
back to the system between the analysis and the writing of a run.

A national run frees gigabytes between its phases (the stream's buffers, the frames of the
classification, the tables and the workbook once written). glibc keeps what Python, NumPy
and pandas free in small blocks in its heaps until it is asked to give it back, so a phase
that follows another would start on top of memory nobody uses: :func:`release` hands it
back, and the peak RSS of a run is nearer that of its largest phase than of two phases
stacked. (pyarrow's pool, jemalloc, gives its large blocks back by itself.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import resource
import sys
from pathlib import Path

__all__ = ["release", "usage"]

_STATUS = Path("/proc/self/status")


def usage() -> tuple[int | None, int]:
    """The process's resident memory now and its peak, in bytes.

    Returns
    -------
    tuple
        (VmRSS, VmHWM) from ``/proc/self/status`` (the kernel updates both from per-thread
        counters, so they lag by some kilobytes); where that file does not exist, (None, the
        peak from ``getrusage``).
    """
    try:
        text = _STATUS.read_text()
    except OSError:
        scale = 1 if sys.platform == "darwin" else 1024  # macOS counts bytes, Linux KiB
        return None, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return _kib(fields["VmRSS"]), _kib(fields["VmHWM"])


def _kib(value: str) -> int:
    return int(value.split()[0]) * 1024


def release() -> None:
    """Give the free memory of glibc's heaps back to the system (``malloc_trim``); nothing in
    use is moved or lost. Does nothing where the C library is not glibc."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None (musl, macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim
