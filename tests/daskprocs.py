"""A Dask cluster of real processes, started as the engineer's guide tells a user to start one
on several machines: ``dask scheduler`` and ``dask worker tcp://host:port``, here on 127.0.0.1.

The workers import the ruralcov under test (its source folder first on their ``PYTHONPATH``),
as every machine of a cluster must run the same ruralcov as the client.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import ruralcov

#: The folder that holds the ruralcov package under test.
SOURCE = Path(ruralcov.__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (bound, read and closed again)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _process(args: list[str], log: Path) -> Iterator[subprocess.Popen]:
    """``python -m dask ARGS``, its output in ``log``; interrupted (then killed) on leaving."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(SOURCE), *filter(None, [os.environ.get("PYTHONPATH")])])}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)  # the worker's nanny stops its children
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def _wait_for(address: str, workers: int, procs: list[subprocess.Popen], logs: Path) -> None:
    """Wait until the scheduler at ``address`` answers with ``workers`` workers."""
    import asyncio

    from distributed.core import rpc

    async def count() -> int:
        async with rpc(address, timeout=2) as scheduler:
            return len((await scheduler.identity())["workers"])

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            break
        try:
            if asyncio.run(count()) >= workers:
                return
        except OSError:
            pass
        time.sleep(0.3)
    text = "\n".join(p.read_text(errors="replace")[-2000:] for p in sorted(logs.glob("*.log")))
    raise RuntimeError(f"the cluster at {address} did not start with {workers} workers:\n{text}")


@contextmanager
def dask_cluster(logs: Path, *, workers: int = 2, memory_limit: str = "2GiB") -> Iterator[str]:
    """A scheduler and ``workers`` single-threaded worker processes (none: a scheduler alone).

    Parameters
    ----------
    logs
        Folder for the processes' output (shown when the cluster does not start).
    workers, memory_limit
        ``dask worker --nworkers`` and ``--memory-limit`` (per worker).

    Yields
    ------
    str
        The scheduler's address, ``tcp://127.0.0.1:PORT``.
    """
    logs.mkdir(parents=True, exist_ok=True)
    address = f"tcp://127.0.0.1:{free_port()}"
    with ExitStack() as stack:
        procs = [stack.enter_context(_process(
            ["scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
             "--no-dashboard"], logs / "scheduler.log"))]
        _wait_for(address, 0, procs, logs)
        if workers:
            procs.append(stack.enter_context(_process(
                ["worker", address, "--nworkers", str(workers), "--nthreads", "1",
                 "--memory-limit", memory_limit, "--no-dashboard", "--host", "127.0.0.1"],
                logs / "worker.log")))
            _wait_for(address, workers, procs, logs)
        yield address
