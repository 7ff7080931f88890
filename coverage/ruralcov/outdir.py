"""The output folder of a run: one writer at a time, room checked before the work, built aside
and swapped in whole, and what interrupted commands left behind put right.

A run folder is what engineers publish and auditors check, so it is never lost, clobbered or
half-written, whatever happens to the command that writes it:

Lock
    Every command that writes a run folder ``<out>`` (``run``, ``demo``, ``plan``, ``map``, and
    ``audit`` / ``diff`` writing into it) first holds ``<out>.lock``, a file beside the folder
    that names the process holding it (pid, host, start time, command). A second command on the
    same folder stops at once with :class:`~ruralcov.errors.FolderInUseError` and writes
    nothing. The lock is an operating-system lock on that file (``flock``; ``msvcrt.locking``
    on Windows), which the system releases when its process dies, even by ``kill -9``: a lock
    file whose lock is free was left by a process that no longer runs, and the next command
    takes it over and says so once. A lock file written on another host is never taken over
    (whether its process still runs cannot be known from here); the message names the file to
    delete. The file is removed when the command ends.
Preflight
    Before the analysis (``ruralcov run`` and ``demo``): the lock is taken (which creates the
    parent folder), the free space must reach a floor estimated from the size of the inputs
    (:func:`space_floor`, :func:`preflight`), and the temporary folder of the swap below is
    made. A read-only disk, a part of the path that is a file, a name too long for the file
    system or a symbolic-link loop so stop the command in its first second, as one line naming
    the path and the error; the same errors met later, while writing, read the same way.
Swap
    Everything, the demo's generated inputs included, is written into ``<out>.tmp-<hex>``;
    ``manifest.json`` comes last and is written under another name and renamed, so a folder
    that holds it is complete. Then the old run is renamed to ``<out>.old-<hex>``, the new one
    to ``<out>``, and the old one is deleted. Until the first rename the old run is untouched;
    inputs of the old run that the new one reads (``ruralcov run RUN/config.toml``) are
    hard-linked or copied into the new folder, never moved.

    Two renames rather than one exchange: Linux can swap two folders in one step
    (``renameat2(RENAME_EXCHANGE)``), but Windows and macOS cannot and neither can every file
    system Linux mounts (network shares among them). The two-step swap is the same everywhere,
    so the path the tests exercise by killing real processes is the one every user gets. The
    one instant it leaves open, between the renames, is repaired by recovery.
Recovery
    Every command holding the lock first looks beside ``<out>``: when ``<out>`` is missing and a
    complete old run waits in ``<out>.old-*``, it is put back (a command stopped between the
    two renames); the other ``<out>.tmp-*`` and ``<out>.old-*`` folders are then deleted, and
    each is named once in a warning. A run is only deleted once a complete run is at
    ``<out>``: when ``<out>`` holds none (a folder left by ruralcov 0.1) a complete old run is
    kept and the warning says where it is. A complete ``<out>.tmp-*`` is deleted: its command
    never finished, and ``<out>`` holds what the last finished command wrote.

Folders and files are created with the user's umask, like any other program's output (the
``tempfile`` module would make them private to the user).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import secrets
import shutil
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ruralcov.errors import ConfigError, FolderInUseError, OutputError, RuralcovError

__all__ = [
    "DEMO_FLOOR",
    "Staging",
    "absolute",
    "locked",
    "output_error",
    "preflight",
    "space_floor",
    "staging",
    "unique_name",
    "write_atomic",
]

log = logging.getLogger(__name__)

#: Free bytes the demo needs at least: its generated inputs (39 MB) and its run folder without
#: maps (21 MB), rounded down; with maps it needs about 85 MB.
DEMO_FLOOR = 48 * 2**20

_HOST = socket.gethostname()
#: ``.tmp-`` / ``.old-`` and the token ruralcov puts after them (the 8 characters of
#: ``tempfile`` names in ruralcov 0.1); other names beside a run folder are never touched.
_LEFTOVER = re.compile(r"\.(tmp|old)-([0-9a-f]{12}|[a-z0-9_]{8})")
_MANIFEST = "manifest.json"

_HINTS = {
    errno.ENOSPC: "free some space on that disk or choose another --out folder",
    errno.EFBIG: "a file grew beyond the size the file system or this process allows "
    "(`ulimit -f`); choose another --out folder",
    errno.EROFS: "that file system is read-only; choose another --out folder",
    errno.EACCES: "choose a folder you may write to",
    errno.EPERM: "choose a folder you may write to",
    errno.ENAMETOOLONG: "choose a shorter --out folder or [run] name",
    errno.ELOOP: "a symbolic link in the path leads back to itself; fix the link or choose "
    "another --out folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another --out folder",
    errno.EEXIST: "a part of the path is a file, not a folder; choose another --out folder",
    errno.ENOLCK: "that file system cannot lock files (a network share?); choose a folder on a "
    "local disk",
}
if hasattr(errno, "EDQUOT"):
    _HINTS[errno.EDQUOT] = _HINTS[errno.ENOSPC]


def absolute(path: Path | str) -> Path:
    """``path`` made absolute with its symbolic links followed.

    Two spellings of one folder then share one lock. A symbolic-link loop is left in place for
    the file system to report (as ``ELOOP``) when the folder is made.

    Parameters
    ----------
    path
        A path, ``~`` allowed.

    Returns
    -------
    pathlib.Path
        The absolute path.
    """
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def unique_name(path: Path, kind: str) -> Path:
    """A sibling name that no other command uses.

    Parameters
    ----------
    path
        The file or folder.
    kind
        What the sibling is (``tmp``, ``old``).

    Returns
    -------
    pathlib.Path
        ``<path>.<kind>-<12 hex digits>``.
    """
    return path.with_name(f"{path.name}.{kind}-{secrets.token_hex(6)}")


def write_atomic(path: Path | str, write: Callable[[Path], object]) -> Path:
    """Write ``path`` whole or not at all: ``write`` writes a temporary sibling, which then
    replaces ``path``; a failed write leaves no half file.

    Parameters
    ----------
    path
        The file to write; its folder is made when missing.
    write
        Called with the temporary path to write (made there, so with the user's umask).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = unique_name(path.with_name(f".{path.name}"), "tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# --------------------------------------------------------------------------- errors


def _os_error(exc: BaseException) -> OSError | None:
    """The operating-system error behind ``exc``: itself, or the one a library wrapped as its
    first argument (xlsxwriter's ``FileCreateError``). An error merely raised while another was
    handled is not one: that would pass a bug off as a full disk."""
    for candidate in (exc, *getattr(exc, "args", ())[:1]):
        if (
            isinstance(candidate, OSError)
            and not isinstance(candidate, RuralcovError)
            and candidate.errno is not None
        ):
            return candidate
    return None


def output_error(
    exc: BaseException, out: Path, *, doing: str = "write the run folder"
) -> OutputError | None:
    """An operating-system error as one line for the user.

    Parameters
    ----------
    exc
        The error raised.
    out
        The folder being written.
    doing
        What was being done, for the message (``cannot <doing> <out>``).

    Returns
    -------
    OutputError or None
        One line naming the folder, the file, the error's meaning and the fix; None when
        ``exc`` is not an operating-system error (a bug keeps its traceback).
    """
    found = _os_error(exc)
    if found is None:
        return None
    code = int(found.errno)  # type: ignore[arg-type]
    name = errno.errorcode.get(code, str(code))
    where = os.fsdecode(found.filename) if found.filename is not None else ""
    at = f" at {where!r}" if where and where != str(out) else ""
    hint = _HINTS.get(code)
    return OutputError(
        f"cannot {doing} {str(out)!r}: {os.strerror(code)} ({name}){at}"
        + (f"; {hint}" if hint else "")
    )


@contextmanager
def _as_output_errors(out: Path, doing: str) -> Iterator[None]:
    try:
        yield
    except RuralcovError:
        raise
    except Exception as exc:
        error = output_error(exc, out, doing=doing)
        if error is None:
            raise
        raise error from exc


# --------------------------------------------------------------------------- lock

#: Locks this process holds: (lock file, thread) -> [file descriptor, depth].
_HELD: dict[tuple[str, int], list[int]] = {}


def _try_lock(fd: int) -> bool:
    """Take the operating-system lock on ``fd`` without waiting; False when it is held."""
    if sys.platform == "win32":  # pragma: no cover - tested on Linux only
        import msvcrt

        os.lseek(fd, 1 << 20, os.SEEK_SET)  # a byte past the text, which others still read
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _read_holder(fd: int) -> dict | None:
    """What the lock file says about its holder: None when it is empty."""
    os.lseek(fd, 0, os.SEEK_SET)
    data = os.read(fd, 1 << 16)
    if not data.strip():
        return None
    try:
        holder = json.loads(data.decode("utf-8"))
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict) -> str:
    return (
        f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
        f"{holder.get('command') or 'ruralcov'}, since {holder.get('started', '?')}"
    )


def _acquire(lock: Path, out: Path, command: str) -> int:
    """Open and lock ``lock``; return its descriptor (see the module docstring)."""
    for _ in range(50):  # the lock file may be removed and made again between the steps
        with _as_output_errors(out, "lock the run folder"):
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            with _as_output_errors(out, "lock the run folder"):
                free = _try_lock(fd)
            if not free:
                holder = _read_holder(fd) or {}
                raise FolderInUseError(
                    f"run folder {str(out)!r} is in use by another ruralcov command "
                    f"({_describe(holder)}; lock file {str(lock)!r}); wait until it ends or "
                    "choose another --out folder"
                )
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(lock))
            except FileNotFoundError:
                same = False
            if not same:  # its holder removed it after we opened it: open the new one
                os.close(fd)
                continue
            holder = _read_holder(fd)
            if holder is not None and holder.get("host") != _HOST:
                raise OutputError(
                    f"run folder {str(out)!r} was locked by a ruralcov command on another "
                    f"computer ({_describe(holder)}); if no ruralcov command is running there "
                    f"any more, delete {str(lock)!r} and run again"
                )
            if holder is not None:
                log.warning("took over the lock %s left by %s, which no longer runs",
                            lock, _describe(holder))
            text = json.dumps({
                "pid": os.getpid(),
                "host": _HOST,
                "started": datetime.now(UTC).isoformat(timespec="seconds"),
                "command": command,
            })
            with _as_output_errors(out, "lock the run folder"):
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                os.write(fd, text.encode("utf-8"))
            return fd
        except BaseException:
            os.close(fd)
            raise
    raise OutputError(f"cannot lock the run folder {str(out)!r}: {str(lock)!r} keeps changing")


def _release(fd: int, lock: Path) -> None:
    """Empty and remove the lock file, then let go of the lock (in that order on POSIX, so a
    command that opened the file meanwhile finds it gone and opens a new one)."""
    try:
        os.ftruncate(fd, 0)  # an empty lock file was released cleanly, never "left"
    except OSError:
        pass
    if sys.platform == "win32":  # pragma: no cover - an open file cannot be removed there
        os.close(fd)
        try:
            lock.unlink()
        except OSError:
            pass
        return
    try:
        lock.unlink()
    except OSError:
        pass
    os.close(fd)


def _make_parents(folder: Path, out: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return those created, deepest last."""
    missing: list[Path] = []
    at = folder
    while not os.path.lexists(at) and at.parent != at:
        missing.append(at)
        at = at.parent
    with _as_output_errors(out, "create the run folder"):
        for path in reversed(missing):
            os.mkdir(path)
    return list(reversed(missing))


@contextmanager
def locked(out: Path | str, *, command: str = "ruralcov") -> Iterator[Path]:
    """Hold ``<out>.lock`` while the block runs, after putting right what interrupted commands
    left beside ``out``; yield ``out`` made :func:`absolute`.

    A thread that already holds the lock may take it again (``ruralcov demo`` holds it and calls
    :func:`ruralcov.write_run`, which takes it too).

    Parameters
    ----------
    out
        The run folder.
    command
        Who holds the lock, as the message of a second command names it.

    Yields
    ------
    pathlib.Path
        ``out`` made :func:`absolute`.

    Raises
    ------
    FolderInUseError
        When another command holds the lock.

    Examples
    --------
    >>> with locked("out/2026q3", command="my script") as out:  # doctest: +SKIP
    ...     write_run(result, out, force=True)
    """
    out = absolute(out)
    if out.parent == out:
        raise ConfigError(f"the run folder cannot be {str(out)!r}; choose another --out folder")
    lock = out.with_name(f"{out.name}.lock")
    key = (str(lock), threading.get_ident())
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield out
        finally:
            _HELD[key][1] -= 1
        return
    created = _make_parents(out.parent, out)
    try:
        fd = _acquire(lock, out, command)
    except BaseException:
        _remove_empty(created)
        raise
    _HELD[key] = [fd, 1]
    try:
        _recover(out)
        yield out
    finally:
        del _HELD[key]
        _release(fd, lock)
        if not os.path.lexists(out):
            _remove_empty(created)


def _remove_empty(created: list[Path]) -> None:
    """Remove the parent folders this command created, when nothing was put in them."""
    for path in reversed(created):
        try:
            path.rmdir()
        except OSError:
            return


# --------------------------------------------------------------------------- recovery


def _complete(folder: Path) -> Path | None:
    """The complete run in ``folder`` (``manifest.json`` is written last), or in
    ``folder/<name>`` (how ruralcov 0.1 set a run aside); None when there is none."""
    if (folder / _MANIFEST).is_file():
        return folder
    inner = folder / folder.name[: folder.name.rindex(".")]  # <name>.old-<token>/<name>
    return inner if (inner / _MANIFEST).is_file() else None


def _leftovers(out: Path) -> list[Path]:
    try:
        names = os.listdir(out.parent)
    except OSError:
        return []
    prefix = out.name
    return sorted(
        out.parent / n
        for n in names
        if n.startswith(prefix) and _LEFTOVER.fullmatch(n[len(prefix):])
    )


def _recover(out: Path) -> None:
    """Put back a run set aside by an interrupted swap and remove the other leftovers."""
    left = _leftovers(out)
    if not left:
        return
    olds = [p for p in left if p.name[len(out.name):].startswith(".old-")]
    if not os.path.lexists(out):
        runs = [(p, run) for p in olds if (run := _complete(p)) is not None]
        if runs:
            holder, run = max(runs, key=lambda pr: (pr[1] / _MANIFEST).stat().st_mtime)
            with _as_output_errors(out, "put back the run folder"):
                os.replace(run, out)
            log.warning("put back the run folder %s from %s, where a command that was stopped "
                        "before it finished had set it aside", out, holder.name)
            if holder == run:  # (a 0.1 holder folder is empty now, and removed below)
                left.remove(holder)
    out_complete = (out / _MANIFEST).is_file()
    removed: list[str] = []
    for path in left:
        if path in olds and not out_complete and _complete(path) is not None:
            log.warning("%s holds an earlier complete run, and %s holds no complete run; "
                        "neither is deleted: keep the one you need and delete the other",
                        path, out)
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        if not os.path.lexists(path):
            removed.append(path.name)
    if removed:
        log.warning("removed what interrupted ruralcov commands left beside %s: %s",
                    out, ", ".join(removed))


# --------------------------------------------------------------------------- preflight


def space_floor(paths: Iterable[Path | None]) -> int:
    """Free bytes a run needs at least: the size of its village inputs, each file once.

    A run folder holds the villages several times over (GeoParquet, CSV and workbook; about
    six times their input size for the demo with maps), so their size once is a floor that
    a run which would succeed never misses; it catches a full disk before the analysis, not
    every shortage (those stop the writing, with the same kind of message).

    Parameters
    ----------
    paths
        The village inputs (None and missing paths count nothing).

    Returns
    -------
    int
        Bytes.
    """
    total = 0
    for path in {absolute(p) for p in paths if p is not None}:
        try:
            total += path.stat().st_size if path.is_file() else 0
        except OSError:
            continue
    return total


def preflight(out: Path | str, *, need_bytes: int = 0) -> None:
    """Stop before the analysis when the run folder cannot be written (see the module
    docstring); with the lock held, so the parent folder exists.

    Parameters
    ----------
    out
        The run folder.
    need_bytes
        Free space the run needs at least (:func:`space_floor`).
    """
    out = absolute(out)
    if os.path.lexists(out) and not out.is_dir():
        raise ConfigError(f"run folder {str(out)!r} is a file; choose another --out folder")
    with _as_output_errors(out, "check the room for the run folder"):
        free = shutil.disk_usage(out.parent).free
    if free < need_bytes:
        raise OutputError(
            f"cannot write the run folder {str(out)!r}: only {_size(free)} free on its disk, "
            f"and this run needs at least {_size(need_bytes)} (estimated from the size of its "
            "village inputs); free some space on that disk or choose another --out folder"
        )


def ample_room(folder: Path | str, need_bytes: int) -> bool:
    """Whether files of ``need_bytes`` can surely be written into ``folder``: as much free on
    its disk, and no smaller limit on a file's size (``ulimit -f``).

    The run folder's writer writes results.gpkg beside the workbook only then: GDAL prints
    its own errors when a write is refused, and with room to spare the first file refused is
    one of ruralcov's (one line), before GDAL starts.

    Parameters
    ----------
    folder
        An existing folder.
    need_bytes
        Bytes.
    """
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return False
    if free < need_bytes:
        return False
    if sys.platform == "win32":
        return True
    import resource

    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return limit == resource.RLIM_INFINITY or limit >= need_bytes


def _size(n: int) -> str:
    """``n`` bytes for people: ``16 kB``, ``1.5 MB``, ``3.2 GB``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n / 1e3:,.0f} kB"


# --------------------------------------------------------------------------- staging


class Staging:
    """The temporary sibling ``<out>.tmp-<hex>`` in which a run folder is built.

    :meth:`commit` swaps it in for ``out``; :func:`staging` makes one and removes it when the
    block fails. Use it with the lock held (:func:`locked`).
    """

    def __init__(self, out: Path | str) -> None:
        self.out = absolute(out)
        self.tmp = unique_name(self.out, "tmp")
        with _as_output_errors(self.out, "write the run folder"):
            os.mkdir(self.tmp)  # with the umask, unlike tempfile.mkdtemp
        self.committed = False

    def commit(self) -> Path:
        """Move the finished folder to ``out``: the old run aside, the new one in, the old
        one deleted.

        Returns
        -------
        pathlib.Path
            ``out``.

        Raises
        ------
        OutputError
            When ``out`` cannot be renamed, as on Windows while a file in it is open (the
            old run stays in place).
        """
        out = self.out
        old: Path | None = None
        try:
            if os.path.lexists(out):
                old = unique_name(out, "old")
                os.replace(out, old)
            try:
                os.replace(self.tmp, out)
            except BaseException:
                if old is not None and not os.path.lexists(out):
                    os.replace(old, out)
                raise
        except OSError as exc:
            raise OutputError(
                f"cannot replace the run folder {str(out)!r}: {exc}. Close files opened from "
                "it (for example report.xlsx in Excel or WPS) and run again."
            ) from exc
        self.committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)  # what is left goes at the next command
        return out

    def discard(self) -> None:
        """Remove the temporary folder (nothing of ``out`` is touched)."""
        if not self.committed:
            shutil.rmtree(self.tmp, ignore_errors=True)


@contextmanager
def staging(out: Path | str) -> Iterator[Staging]:
    """A temporary folder to build the run folder ``out`` in.

    Operating-system errors inside the block become one-line
    :class:`~ruralcov.errors.OutputError` s naming the file and the fix.

    Parameters
    ----------
    out
        The run folder.

    Yields
    ------
    Staging
        Removed when the block fails or does not commit it.
    """
    stage = Staging(out)
    try:
        with _as_output_errors(stage.out, "write the run folder"):
            yield stage
    finally:
        stage.discard()
