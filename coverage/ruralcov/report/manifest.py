"""``manifest.json``: what a run read, with which parameters and versions, and what it wrote.

The manifest names every input with its sha256 and row counts (rows read = used + dropped, by
reason; an input read from a database names its ``table`` or ``query``, and its ``sha256`` is
the content hash of the rows read, :class:`ruralcov.postgis.RowDigest`), the parameters, the
headline numbers and the sha256 of every file the run wrote (``outputs``), so that
``ruralcov verify`` can check a run folder and recompute it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import platform
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ruralcov.config import DatabaseSource, config_to_dict, path_text
from ruralcov.outdir import write_atomic
from ruralcov.pipeline import CoverageResult

__all__ = ["build_manifest", "json_value", "write_manifest"]

_VERSIONED = (
    "numpy", "pandas", "geopandas", "shapely", "pyproj", "pyogrio", "pyarrow", "xlsxwriter"
)


def json_value(value: Any) -> Any:
    """``value`` as a plain JSON value: numpy scalars unwrapped, NaN and NA as None.

    Parameters
    ----------
    value
        A value, mapping or sequence from a result (numpy and pandas scalars included).

    Returns
    -------
    object
        The same value built from ``dict``, ``list``, ``str``, ``int``, ``float``, ``bool``
        and ``None`` only (paths as text, non-finite floats as None).

    Examples
    --------
    >>> json_value({"n": np.int64(3), "share": float("nan"), "codes": (1, pd.NA)})
    {'n': 3, 'share': None, 'codes': [1, None]}
    """
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # pragma: no cover - all are dependencies
            out[name] = None
    return out


def _applied_records(result: CoverageResult) -> list[dict[str, Any]]:
    """The overrides of the corrections ledger applied in this run (none without a ledger)."""
    applied = getattr(result, "corrections", None)
    return [] if applied is None else applied.to_dict("records")


def _input_records(result: CoverageResult, roots: list[Path]) -> list[dict[str, Any]]:
    """The manifest's ``inputs``; an input whose rows do not balance is a bug in a reader."""
    inputs = []
    for rec in result.inputs:
        dropped = {str(k): int(v) for k, v in rec.dropped.items()}
        if rec.rows_read != rec.rows_used + sum(dropped.values()):
            raise AssertionError(
                f"input {rec.layer} ({rec.path}): rows read {rec.rows_read} != rows used "
                f"{rec.rows_used} + rows dropped {sum(dropped.values())} {dropped}; "
                "this is a bug in ruralcov, please report it"
            )
        where: dict[str, Any] = {"path": path_text(Path(rec.path), roots)}
        if isinstance(rec.path, DatabaseSource):  # no file: the URI, and what was read
            where = {"path": str.__str__(rec.path), "table": rec.path.table,
                     "query": rec.path.query}
        inputs.append(
            {
                "layer": rec.layer,
                **where,
                "sha256": rec.sha256,
                "rows_read": int(rec.rows_read),
                "rows_used": int(rec.rows_used),
                "rows_dropped": sum(dropped.values()),
                "dropped": dropped,
            }
        )
    return inputs


def build_manifest(
    result: CoverageResult,
    out: Path | str,
    outputs: Mapping[str, str],
    *,
    created: str | None = None,
    staging: Path | None = None,
) -> dict[str, Any]:
    """The manifest of a run folder at ``out`` as a dict.

    Parameters
    ----------
    result
        What :func:`ruralcov.analyse` returned.
    out
        The run folder.
    outputs
        Each written file's path relative to the run folder -> its sha256.
    created
        The run's time (ISO 8601); default now.
    staging
        The temporary folder that becomes ``out`` (where the demo writes its inputs).

    Returns
    -------
    dict
        The manifest. Input paths inside ``out`` or ``staging`` are written relative to it
        (the folder stays movable), others absolute as the configuration names them.

    Raises
    ------
    AssertionError
        When an input's rows do not balance (read = used + dropped): a bug in a reader, not
        a user error.
    """
    from ruralcov import __version__

    out = Path(out)
    roots = [out] + ([staging] if staging is not None else [])
    config = result.config
    parameters = json_value(config_to_dict(config, relative_to=roots))
    return {
        "ruralcov_version": __version__,
        "created": created or datetime.now(UTC).isoformat(timespec="seconds"),
        "run_name": config.run.name,
        "profile": config.run.profile,
        "provenance": config.run.provenance,
        "targets": dataclasses.asdict(config.targets),
        "parameters": parameters,
        "config_sha256": hashlib.sha256(
            json.dumps(parameters, sort_keys=True).encode("utf-8")
        ).hexdigest(),
        "metric_crs": result.metric_crs,
        "inputs": _input_records(result, roots),
        "outputs": dict(sorted(outputs.items())),
        "versions": _versions(),
        "headline": json_value(dict(result.headline)),
        "corrections": json_value(_applied_records(result)),
    }


def write_manifest(folder: Path | str, manifest: Mapping[str, Any]) -> Path:
    """Write ``<folder>/manifest.json`` whole or not at all (through a temporary sibling).

    Parameters
    ----------
    folder
        The run folder (or the temporary folder that becomes it).
    manifest
        What :func:`build_manifest` returned, perhaps updated (``ruralcov plan``, ``map``).

    Returns
    -------
    pathlib.Path
        The manifest's path. A folder that holds ``manifest.json`` is complete, so the file
        appears only once every other file is written.
    """
    path = Path(folder) / "manifest.json"
    text = json.dumps(manifest, ensure_ascii=False, indent=2, allow_nan=False) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path
