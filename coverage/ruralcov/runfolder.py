"""Reading a run folder back into a :class:`~ruralcov.pipeline.CoverageResult`, and redrawing
its maps (``ruralcov map RUN_DIR``).

The run folder is the hand-over between an engineer's quarterly run and a planner's maps: the
numbers come from the folder as written (``villages.parquet``, ``tables/*.csv``,
``manifest.json``, ``config.toml``), never from a new analysis. Fibre assets and speed tests
are not stored in the folder; they are read again from the inputs named in ``config.toml``
when those files are still there, and otherwise left off the county maps (with a warning).
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

from ruralcov.config import load_config
from ruralcov.errors import InputError, RuralcovError
from ruralcov.outdir import unique_name
from ruralcov.pipeline import CoverageResult, InputRecord, empty_assets

__all__ = ["read_manifest", "read_plan", "read_run", "redraw_maps"]

log = logging.getLogger(__name__)

_TRUE_FALSE = {"TRUE": True, "FALSE": False}


def _need(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise InputError(
            f"{str(folder)!r} is not a complete ruralcov run folder: {name} is missing. "
            "Give the folder written by `ruralcov run` or `ruralcov demo`."
        )
    return path


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


def _assets(config: Any, villages: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    from ruralcov.loaders import load_fibre

    points, routes = [empty_assets()], [empty_assets()]
    codes = villages["village_code"]
    for i, source in enumerate(config.fibre):
        if source.kind == "table":
            continue
        try:
            loaded, _ = load_fibre(source, i, codes)
        except (RuralcovError, OSError) as exc:
            log.warning("fibre source %s not drawn on the county maps: %s", source.path, exc)
            continue
        frame = loaded.frame
        points.append(frame[frame["role"] == "points"].drop(columns="role"))
        routes.append(frame[frame["role"] == "routes"].drop(columns="role"))
    return (
        gpd.GeoDataFrame(pd.concat(points, ignore_index=True), crs="EPSG:4326"),
        gpd.GeoDataFrame(pd.concat(routes, ignore_index=True), crs="EPSG:4326"),
    )


def read_run(folder: Path | str, *, assets: bool = True) -> CoverageResult:
    """The result stored in a run folder.

    Parameters
    ----------
    folder
        A folder written by :func:`ruralcov.write_run` (``ruralcov run`` / ``ruralcov demo``).
    assets
        Read the fibre access points and routes again from the inputs in ``config.toml``
        (they are not stored in the run folder); missing inputs are skipped with a warning.

    Raises :class:`~ruralcov.errors.InputError` when a file of the run folder is missing.

    Examples
    --------
    >>> result = read_run("out/demo")  # doctest: +SKIP
    >>> result.summaries["county"].head()  # doctest: +SKIP
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"run folder {str(folder)!r} does not exist")
    villages = gpd.read_parquet(_need(folder, "villages.parquet"))
    manifest = read_manifest(folder)
    config = load_config(_need(folder, "config.toml"))
    tables = folder / "tables"
    summaries = {
        path.stem.removeprefix("summary_"): _exact_shares(_read_table(path))
        for path in sorted(tables.glob("summary_*.csv"))
    }
    gaps = {}
    for key, name in (
        ("no_fibre", "gaps_no_fibre"),
        ("below_speed", "gaps_below_speed"),
        ("insufficient_data", "gaps_insufficient_data"),
    ):
        path = tables / f"{name}.csv"
        if path.is_file():
            gaps[key] = _read_table(path)
    issues_path = tables / "issues.csv"
    issues = _read_table(issues_path) if issues_path.is_file() else pd.DataFrame()
    inputs = tuple(
        InputRecord(
            layer=rec["layer"],
            path=(folder / rec["path"])
            if not Path(rec["path"]).is_absolute()
            else Path(rec["path"]),
            sha256=rec["sha256"],
            rows_read=int(rec["rows_read"]),
            rows_used=int(rec["rows_used"]),
            dropped=dict(rec.get("dropped", {})),
        )
        for rec in manifest.get("inputs", [])
    )
    if assets:
        points, routes = _assets(config, villages)
    else:
        points, routes = empty_assets(), empty_assets()
    return CoverageResult(
        config=config,
        villages=villages,
        summaries=summaries,
        gaps=gaps,
        issues=issues,
        inputs=inputs,
        headline=dict(manifest.get("headline", {})),
        fibre_points=points,
        fibre_routes=routes,
        metric_crs=str(manifest["metric_crs"]),
    )


def read_plan(folder: Path | str) -> gpd.GeoDataFrame | None:
    """``<folder>/plan.parquet`` (proposed fibre links) when it exists, else None."""
    path = Path(folder) / "plan.parquet"
    if not path.is_file():
        return None
    try:
        return gpd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the fibre plan ({exc})") from exc


def redraw_maps(folder: Path | str, *, basemap: str | None = None) -> list[Path]:
    """Draw ``<folder>/maps/`` again from the run folder; return the files written.

    The new maps are written into a temporary sibling and swapped in only when complete, so
    a failure leaves the old maps in place. The plan (``plan.parquet``) is drawn when present.
    The manifest's hashes of the ``maps/`` files are updated.
    """
    from ruralcov.maps import write_maps
    from ruralcov.report import sha256_file

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
    manifest_path = folder / "manifest.json"
    manifest = read_manifest(folder)
    outputs = {k: v for k, v in manifest.get("outputs", {}).items() if not k.startswith("maps/")}
    for path in sorted(maps_dir.rglob("*")):
        if path.is_file():
            outputs[path.relative_to(folder).as_posix()] = sha256_file(path)
    manifest["outputs"] = dict(sorted(outputs.items()))
    manifest_path.write_text(
        json.dumps(manifest, ensure_ascii=False, indent=2, allow_nan=False) + "\n",
        encoding="utf-8",
    )
    return written
