"""The error family: every failure a user can fix is one of these, with a message naming the fix."""

from __future__ import annotations

from collections.abc import Collection, Iterable


class RuralcovError(Exception):
    """Base class; the CLI prints the message as one line and exits with status 2."""


class ConfigError(RuralcovError, ValueError):
    """The configuration file is unreadable, has an unknown key or a value out of range."""


class InputError(RuralcovError, OSError):
    """An input file is missing, unreadable or in a format that cannot be read."""


class SchemaError(RuralcovError, ValueError):
    """An input lacks a required column or has values of the wrong type."""


class UnitError(SchemaError):
    """A speed column's values cannot be in the unit the configuration declares for them
    (:mod:`ruralcov.units`)."""


class CRSError(RuralcovError, ValueError):
    """An input has no CRS and none was given, or its coordinates cannot be in its CRS."""


class OutputExistsError(RuralcovError, FileExistsError):
    """The run folder already holds a run and replacing it was not asked for (``--force``)."""


class OutputError(RuralcovError, OSError):
    """The run folder cannot be written: no space left, a read-only disk, a part of the path
    that is a file, a name too long for the file system, a symbolic-link loop."""


class FolderInUseError(OutputError):
    """Another ruralcov command is writing the same run folder (it holds ``<out>.lock``)."""


def require_columns(wanted: object, available: object, *, where: str, fix: str) -> None:
    """Raise a :class:`SchemaError` when a column of ``wanted`` is not in ``available``.

    The one message for a missing column, whatever the input: it names the input, each missing
    column with the closest one the file has (:func:`did_you_mean`), the file's columns and
    the setting that names the column.

    Parameters
    ----------
    wanted, available
        Column names asked for, and those the file has.
    where
        The input, e.g. ``"fibre[2]: operator.csv"``.
    fix
        What to set, e.g. ``'Set code = "..." in [[fibre]]'``.

    Examples
    --------
    >>> require_columns(["dwn"], ["lon", "lat", "down"], where="speed: t.csv",
    ...                 fix='Set download = "..." in [speed]')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ruralcov.errors.SchemaError: speed: t.csv lacks column(s) ['dwn'] (did you mean 'down'?); ...
    """
    have = [str(c) for c in available]  # type: ignore[attr-defined]
    missing, hints = missing_columns(wanted, have)  # type: ignore[arg-type]
    if missing:
        raise SchemaError(f"{where} lacks column(s) {missing}{hints}; the file has "
                          f"{have[:20]}. {fix}")


def did_you_mean(name: object, candidates: object) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate to a misspelt name, else ``""``.

    Case and surrounding blanks are ignored when comparing, because exported headers often
    differ from the configuration only in those.

    Parameters
    ----------
    name
        The name that was not found.
    candidates
        The names that exist (an iterable, e.g. a frame's columns).

    Returns
    -------
    str
        The hint to append to an error message, or ``""`` when no candidate is close.

    Examples
    --------
    >>> did_you_mean("downlod_mbps", ["lon", "lat", "download_mbps"])
    " (did you mean 'download_mbps'?)"
    """
    import difflib

    options = [str(c) for c in candidates]  # type: ignore[attr-defined]
    by_key = {c.strip().lower(): c for c in reversed(options)}
    hit = difflib.get_close_matches(str(name).strip().lower(), list(by_key), n=1, cutoff=0.6)
    return f" (did you mean {by_key[hit[0]]!r}?)" if hit else ""


def missing_columns(needed: Iterable[object], columns: Collection[object]) -> tuple[list, str]:
    """The needed columns a table lacks, with a :func:`did_you_mean` hint for each.

    Every reader that requires columns names all the missing ones at once, each with the
    closest existing header; the message around them is the reader's own.

    Parameters
    ----------
    needed
        The columns the reader requires, in the order the message lists them.
    columns
        The table's columns (a frame's ``columns`` or a list of names).

    Returns
    -------
    missing, hints
        The needed columns not in ``columns`` (empty when none is missing), and their hints
        joined (``""`` when no header is close).

    Examples
    --------
    >>> missing_columns(["village_code", "downlod_mbps"], ["village_code", "download_mbps"])
    (['downlod_mbps'], " (did you mean 'download_mbps'?)")
    """
    missing = [c for c in needed if c not in columns]
    return missing, "".join(did_you_mean(m, columns) for m in missing)
