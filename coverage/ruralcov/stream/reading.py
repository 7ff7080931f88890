"""What the stream reads: the plan of a tests file, and its batches read ahead in a thread.

The batches themselves come from :func:`ruralcov.io.iter_batches` (CSV through pyarrow's
reader, Parquet through bounded memory maps), the one batch reader of every engine.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from ruralcov import io
from ruralcov.config import SpeedConfig

__all__ = ["prefetch", "reuse_arrow_memory", "speed_plan", "supports"]


def speed_plan(speed: SpeedConfig) -> io.ReadPlan | None:
    """How the tests of ``speed`` are read in batches (:func:`ruralcov.io.read_plan`).

    Parameters
    ----------
    speed
        The ``[speed]`` section: file, layer, coordinate columns and encoding.

    Returns
    -------
    ruralcov.io.ReadPlan or None
        None when the file needs the whole-file loader.
    """
    return io.read_plan(speed.path, layer=speed.layer, lon=speed.lon, lat=speed.lat,
                        encoding=speed.encoding, name="speed")


def supports(speed: SpeedConfig) -> bool:
    """True when the tests input can be streamed (Parquet, GeoParquet with WKB, CSV).

    Parameters
    ----------
    speed
        The ``[speed]`` section; the header of a CSV file or the schema of a Parquet file
        is read to decide.

    Returns
    -------
    bool
        Whether :func:`speed_plan` gives a plan.
    """
    return speed_plan(speed) is not None


def reuse_arrow_memory() -> None:
    """Have pyarrow allocate from jemalloc and keep the pages it frees, for this process.

    pyarrow's default pool hands the memory of each decoded batch back to the system and the
    next batch faults it in anew, zeroing every page (``bench/join.py`` measures the cost).
    Kept pages are reused batch after batch, so memory stays flat at a few batches' worth.
    The command line calls this before a run; a pyarrow built without jemalloc keeps its pool.
    """
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:
        return
    pa.jemalloc_set_decay_ms(-1)  # before the pool's first allocation creates its arenas
    pa.set_memory_pool(pool)


def prefetch(it: Iterator[Any], *, depth: int = 1) -> Iterator[Any]:
    """The items of ``it``, produced in a thread ``depth`` items ahead of the consumer.

    pyarrow, numpy and the numba kernels release the GIL, so producing the next batch overlaps
    with consuming this one. An exception of the producer is raised in the consumer.

    Parameters
    ----------
    it
        The iterator run in the thread.
    depth
        Items produced ahead at most.

    Yields
    ------
    object
        The items of ``it``, in order.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def work() -> None:
        try:
            for item in it:
                q.put(item)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)
        q.put(done)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    while True:
        item = q.get()
        if item is done:
            break
        if isinstance(item, BaseException):
            raise item
        yield item
    t.join()
