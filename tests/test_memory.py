"""ruralcov.memory: the process's memory as the -v log reports it, and giving freed memory
back to the system without losing what is still in use."""

import subprocess
import sys
import textwrap

import pytest

from ruralcov.memory import release, usage

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and glibc")


@linux
def test_usage_reads_the_process_own_rss_and_peak():
    import numpy as np

    rss0, peak0 = usage()
    block = np.ones(300 * 2**20 // 8)  # 300 MiB, touched
    rss1, peak1 = usage()
    assert rss1 - rss0 > 250 * 2**20
    assert peak1 >= rss1 >= rss0 and peak1 >= peak0
    del block
    rss2, peak2 = usage()
    assert rss2 < rss1 - 250 * 2**20  # a large block goes straight back (mmap)
    assert peak2 > rss1 - 2**20  # the high-water mark stays (the kernel's counters lag)


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, check=True)
    return done.stdout


@linux
def test_release_gives_back_freed_small_blocks_and_keeps_the_rest():
    """Small blocks live in glibc's heap: freed, they stay in the process until trimmed.
    The survivors (one in 64, spread over the heap) keep their bytes."""
    out = _run("""
        from ruralcov.memory import release, usage
        blocks = [bytes([i % 251]) * 1000 for i in range(300_000)]  # ~300 MB of 1 kB
        kept = blocks[::64]
        del blocks
        before, _ = usage()
        release()
        after, _ = usage()
        intact = all(b == bytes([(64 * k) % 251]) * 1000 for k, b in enumerate(kept))
        print(before - after, intact, len(kept))
    """).split()
    assert int(out[0]) > 150e6, out
    assert out[1:] == ["True", str(len(range(0, 300_000, 64)))]


def test_release_is_harmless_anywhere():
    release()
    release()
