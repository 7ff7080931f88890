"""Reading a run folder back, the one reader every later step uses, and redrawing its maps
(``ruralcov map RUN_DIR``).

The run folder is the hand-over between an engineer's quarterly run and the steps that use it
(maps, plan, audit, diff, verify): the numbers come from the folder as written
(``villages.parquet``, ``tables/*.csv``, ``manifest.json``, ``config.toml``), the fibre
assets the run read from ``assets.parquet`` and its speed-test cells from ``cells.parquet``,
never from a new analysis or from the run's inputs. A run folder copied elsewhere, without
its inputs, reads back the same.

One function per need: :func:`read_manifest` (the manifest, checked), :func:`read_villages`
(the village table without geometry: audit, diff), :func:`read_run` (the whole
:class:`~ruralcov.pipeline.CoverageResult`: maps, plan) and :func:`read_plan`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from ruralcov.config import DatabaseSource, load_config
from ruralcov.errors import InputError
from ruralcov.io import sha256_file
from ruralcov.outdir import unique_name
from ruralcov.pipeline import CoverageResult, InputRecord
from ruralcov.report import ASSETS_FILE, CELLS_FILE, GAP_TABLES, write_manifest

__all__ = ["read_manifest", "read_plan", "read_run", "read_villages", "redraw_maps"]

log = logging.getLogger(__name__)

_TRUE_FALSE = {"TRUE": True, "FALSE": False}


def _need(folder: Path, name: str) -> Path:
    """``folder / name``, or an :class:`InputError` saying the folder is no (complete) run."""
    if not folder.is_dir():
        raise InputError(f"run folder {str(folder)!r} does not exist")
    path = folder / name
    if not path.is_file():
        again = (f" A run folder written before ruralcov kept {name} is read once the run is "
                 "made again." if name == ASSETS_FILE else "")
        raise InputError(
            f"{str(folder)!r} is not a ruralcov run folder: {name} is missing. Give the "
            f"folder written by `ruralcov run` or `ruralcov demo`.{again}"
        )
    return path


def _parquet(path: Path, *, geo: bool = True, columns: list[str] | None = None) -> Any:
    """A Parquet file of the run folder; a file that cannot be read is an :class:`InputError`
    naming it."""
    try:
        if geo:
            return gpd.read_parquet(path, columns=columns)
        return pd.read_parquet(path, columns=columns)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise InputError(f"{path}: cannot read this file of the run folder ({exc})") from exc


#: What every manifest.json holds (``report.build_manifest``): key -> type, and the same for
#: each record of ``inputs``. Other keys are free (``plan`` is checked on its own).
_MANIFEST_KEYS: dict[str, type] = {
    "created": str, "outputs": dict, "inputs": list, "headline": dict,
}
_INPUT_KEYS: dict[str, type] = {
    "layer": str, "path": str, "sha256": str, "rows_read": int, "rows_used": int,
    "rows_dropped": int, "dropped": dict,
}


def _check_type(value: Any, kind: type, where: str) -> None:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = {dict: "an object", list: "a list", str: "text", int: "a whole number",
                 bool: "true or false", float: "a decimal number"}
        found = "null" if value is None else names.get(type(value), type(value).__name__)
        raise ValueError(f"{where} is {found}, not {names.get(kind, kind.__name__)}")


def _check_keys(record: Any, keys: dict[str, type], where: str) -> None:
    _check_type(record, dict, where)
    for key, kind in keys.items():
        if key not in record:
            raise ValueError(f"{where} has no {key!r}")
        _check_type(record[key], kind, f"{where}[{key!r}]")


def _check_values(mapping: dict[str, Any], kind: type, where: str) -> None:
    for key, value in mapping.items():
        _check_type(value, kind, f"{where}[{key!r}]")


def read_manifest(folder: Path | str) -> dict[str, Any]:
    """``<folder>/manifest.json``, checked to have the shape ruralcov writes.

    Every command that reads a run folder (``audit``, ``diff``, ``verify``, ``plan``, ``map``)
    reads its manifest here, so that a missing, unreadable or hand-broken manifest is one
    :class:`~ruralcov.errors.InputError` naming the file and the key, never a traceback.

    Parameters
    ----------
    folder
        The run folder whose ``manifest.json`` is read.

    Returns
    -------
    dict
        The manifest (:func:`ruralcov.report.build_manifest`).

    Raises
    ------
    InputError
        When the file is missing, not JSON, or lacks a key or type ruralcov writes.
    """
    folder = Path(folder)
    path = folder / "manifest.json"
    if not path.is_file():
        raise InputError(f"{folder} is not a ruralcov run folder (no manifest.json)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:  # UnicodeDecodeError too
        raise InputError(f"{path} is not valid JSON ({exc})") from exc
    try:
        _check_keys(manifest, _MANIFEST_KEYS, "the manifest")
        try:
            datetime.fromisoformat(manifest["created"])
        except ValueError:
            raise ValueError(f"created {manifest['created']!r} is not a time") from None
        _check_values(manifest["outputs"], str, "outputs")
        for i, rec in enumerate(manifest["inputs"]):
            _check_keys(rec, _INPUT_KEYS, f"inputs[{i}]")
            _check_values(rec["dropped"], int, f"inputs[{i}]['dropped']")
        if "plan" in manifest:
            _check_keys(manifest["plan"], {"outputs": dict}, "plan")
            _check_values(manifest["plan"]["outputs"], str, "plan['outputs']")
    except ValueError as exc:
        raise InputError(
            f"{path} is not a ruralcov manifest: {exc}. It is written by `ruralcov run`; "
            "run again rather than editing it"
        ) from exc
    return manifest


def _read_table(path: Path) -> pd.DataFrame:
    """A CSV table of the run folder: codes stay text, TRUE/FALSE become booleans."""
    frame = pd.read_csv(path, encoding="utf-8-sig", dtype=str, keep_default_na=False)
    for col in frame.columns:
        values = frame[col]
        if (
            col == "code"
            or col.endswith("_code")
            or col in ("name", "level")
            or col.endswith("_name")
        ):
            frame[col] = values.replace("", None)
            continue
        present = values[values != ""]
        if len(present) and present.isin(list(_TRUE_FALSE)).all():
            frame[col] = values.map(_TRUE_FALSE).astype(object).where(values != "", None)
            continue
        numbers = pd.to_numeric(values.replace("", None), errors="coerce")
        if numbers.notna().sum() == len(present):
            frame[col] = numbers
        else:
            frame[col] = values.replace("", None)
    return frame


#: Share column -> (numerator, denominator): the CSV rounds shares to 4 decimals, so they are
#: computed again from the counts, exactly as the analysis defines them.
_SHARES = {
    "fibre_share": ("fibre_villages", "villages"),
    "speed_share": ("speed_meets", "villages"),
    "communities_speed_share": ("communities_speed_meets", "communities"),
}


def _exact_shares(summary: pd.DataFrame) -> pd.DataFrame:
    out = summary.copy()
    for share, (num, den) in _SHARES.items():
        if {share, num, den} <= set(out.columns):
            n = pd.to_numeric(out[num], errors="coerce").astype(float)
            d = pd.to_numeric(out[den], errors="coerce").astype(float)
            out[share] = (n / d.where(d > 0)).astype(float)
    return out


def _assets(folder: Path) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """The fibre access points and routes the run read (``assets.parquet``)."""
    frame = _parquet(_need(folder, ASSETS_FILE))
    if frame.crs is not None and not frame.crs.equals("EPSG:4326"):
        frame = frame.to_crs("EPSG:4326")
    if "role" not in frame.columns:
        raise InputError(f"{folder / ASSETS_FILE}: no column 'role'; run the analysis again")
    role = frame["role"].to_numpy(dtype=object)
    parts = (frame[role == kind].drop(columns="role").reset_index(drop=True)
             for kind in ("points", "routes"))
    points, routes = (gpd.GeoDataFrame(p, geometry="geometry", crs="EPSG:4326") for p in parts)
    return points, routes


def _cells(folder: Path) -> pd.DataFrame | None:
    """The run's speed tests per 1 km cell (``cells.parquet``); None when the run has none."""
    path = folder / CELLS_FILE
    return _parquet(path, geo=False) if path.is_file() else None


def _input_path(folder: Path, rec: dict[str, Any]) -> Path | DatabaseSource:
    """Where an input of the manifest was read: a file (relative paths in ``folder``), or a
    database table or query."""
    if "table" in rec or "query" in rec:
        return DatabaseSource(rec["path"], table=rec.get("table"), query=rec.get("query"))
    path = Path(rec["path"])
    return path if path.is_absolute() else folder / path


def _inputs(folder: Path, manifest: dict[str, Any]) -> tuple[InputRecord, ...]:
    return tuple(
        InputRecord(
            layer=rec["layer"],
            path=_input_path(folder, rec),  # type: ignore[arg-type]
            sha256=rec["sha256"],
            rows_read=int(rec["rows_read"]),
            rows_used=int(rec["rows_used"]),
            dropped=dict(rec.get("dropped", {})),
        )
        for rec in manifest.get("inputs", [])
    )


def _tables(folder: Path) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame],
                                   pd.DataFrame]:
    """The summaries by level, the three gap lists and the issues from ``tables/``."""
    tables = folder / "tables"
    summaries = {
        path.stem.removeprefix("summary_"): _exact_shares(_read_table(path))
        for path in sorted(tables.glob("summary_*.csv"))
    }
    gaps = {
        key: _read_table(tables / f"{name}.csv")
        for key, name in GAP_TABLES.items()
        if (tables / f"{name}.csv").is_file()
    }
    issues_path = tables / "issues.csv"
    issues = _read_table(issues_path) if issues_path.is_file() else pd.DataFrame()
    return summaries, gaps, issues


def read_run(folder: Path | str, *, tables: bool = True) -> CoverageResult:
    """The result stored in a run folder, read from the folder alone.

    Parameters
    ----------
    folder
        A folder written by :func:`ruralcov.write_run` (``ruralcov run`` / ``ruralcov demo``),
        here or copied elsewhere: no input of the run is read.
    tables
        Read the summaries, gap lists and issues from ``tables/``; without, they are left
        empty (the plan needs only the villages, the assets and the configuration).

    Returns
    -------
    CoverageResult
        The villages (``villages.parquet``, full precision), the summaries with their shares
        computed again from the counts (the CSV rounds them), the gap lists and issues, the
        inputs and headline of the manifest, the configuration (``config.toml``), every
        fibre asset the run read (``assets.parquet``) and the speed-test cells
        (``cells.parquet``; None when the run kept none).

    Raises
    ------
    InputError
        When the folder is not a run folder, or a file of it is missing or unreadable.

    Examples
    --------
    >>> result = read_run("out/demo")  # doctest: +SKIP
    >>> result.summaries["county"].head()  # doctest: +SKIP
    """
    folder = Path(folder)
    villages_path = _need(folder, "villages.parquet")
    manifest = read_manifest(folder)
    config = load_config(_need(folder, "config.toml"))
    villages = _parquet(villages_path)
    points, routes = _assets(folder)
    summaries, gaps, issues = _tables(folder) if tables else ({}, {}, pd.DataFrame())
    return CoverageResult(
        config=config,
        villages=villages,
        summaries=summaries,
        gaps=gaps,
        issues=issues,
        inputs=_inputs(folder, manifest),
        headline=dict(manifest.get("headline", {})),
        fibre_points=points,
        fibre_routes=routes,
        metric_crs=str(manifest["metric_crs"]),
        cells=_cells(folder),
    )


def read_villages(folder: Path | str) -> pd.DataFrame:
    """The village table of a run folder, without geometry.

    Parameters
    ----------
    folder
        The run folder; its manifest is checked before the table is read.

    Returns
    -------
    pandas.DataFrame
        ``villages.parquet`` at full precision, one row per register entry, without the
        polygons (what ``ruralcov audit`` and ``diff`` compare).

    Raises
    ------
    InputError
        When the folder is not a run folder (its manifest is checked first) or the table
        cannot be read.
    """
    folder = Path(folder)
    read_manifest(folder)
    path = _need(folder, "villages.parquet")
    try:
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read this file of the run folder ({exc})") from exc
    return _parquet(path, geo=False, columns=[c for c in names if c != "geometry"])


def read_plan(folder: Path | str) -> gpd.GeoDataFrame | None:
    """The fibre plan of a run folder.

    Parameters
    ----------
    folder
        A run folder, planned (``ruralcov plan``) or not.

    Returns
    -------
    geopandas.GeoDataFrame or None
        ``plan.parquet`` (the proposed fibre links, :mod:`ruralcov.plan`) when it exists.
    """
    path = Path(folder) / "plan.parquet"
    if not path.is_file():
        return None
    try:
        return gpd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the fibre plan ({exc})") from exc


def redraw_maps(folder: Path | str, *, basemap: str | None = None) -> list[Path]:
    """Draw ``<folder>/maps/`` again from the run folder alone (:func:`read_run`).

    The new maps are written into a temporary sibling and swapped in only when complete, so
    a failure leaves the old maps in place. The plan (``plan.parquet``) is drawn when present.
    The manifest's hashes of the ``maps/`` files are updated.

    Parameters
    ----------
    folder
        The run folder whose ``maps/`` and manifest are written again.
    basemap
        ``none``, ``osm`` or ``amap``; default the run's ``[maps] basemap``.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    from ruralcov.maps import write_maps  # folium is imported only when maps are drawn

    folder = Path(folder)
    result = read_run(folder)
    plan = read_plan(folder)
    maps_dir = folder / "maps"
    tmp = unique_name(maps_dir, "tmp")
    try:
        written = write_maps(result, tmp, plan=plan, basemap=basemap)  # makes tmp, with the umask
        old = None
        if maps_dir.exists():
            old = unique_name(maps_dir, "old")
            os.replace(maps_dir, old)
        os.replace(tmp, maps_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    written = [maps_dir / p.relative_to(tmp) for p in written]
    manifest = read_manifest(folder)
    outputs = {k: v for k, v in manifest.get("outputs", {}).items() if not k.startswith("maps/")}
    for path in sorted(maps_dir.rglob("*")):
        if path.is_file():
            outputs[path.relative_to(folder).as_posix()] = sha256_file(path)
    manifest["outputs"] = dict(sorted(outputs.items()))
    write_manifest(folder, manifest)
    return written
