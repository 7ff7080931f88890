"""What changed between two runs, village by village and area by area, and why.

:func:`diff_runs` compares the village tables of two runs (typically last quarter's and this
quarter's). A village is listed when its fibre status, speed class or ``meets_targets`` changed,
or when it entered or left the register. Each change gets the explanations the two runs can
support, most specific first:

- ``correction``: the village's ``corrections`` text differs (an override added or removed);
- ``new_asset`` / ``asset_gone`` / ``asset_changed``: the access point behind the fibre status
  appeared, disappeared or is another one; ``register_table``: the fibre register table now
  says otherwise; ``fibre_basis``: any other change of the evidence;
- ``more_tests`` / ``fewer_tests``: the number of speed tests changed; ``median_changed``: same
  tests count, another median;
- ``rule_changed``: a parameter that decides this status (targets, ``max_distance_m``,
  ``min_tests``, ...) differs between the manifests;
- ``input_changed``: the input file of that layer has another hash (when nothing more specific
  is known).

Per-area changes in share come from :func:`ruralcov.aggregate.summarise` over each run's
villages, with each run's own fibre target, so they follow the published definitions.

Parameters are compared key by key, except the paths of inputs: those are compared by the
content the run read (the sha256 its manifest records for that input), never by their text.
The same files in another folder (a run folder copied or moved, the same inputs under another
name) are no change; another file, or the same path holding other data, is one, with both
hashes. :func:`diff_folders` is the whole ``ruralcov diff RUN_A RUN_B`` on two run folders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ruralcov import aggregate
from ruralcov.report import write_csv
from ruralcov.runfolder import read_manifest, read_villages
from ruralcov.schema import LEVELS, present_levels

__all__ = ["DiffResult", "change_counts", "diff_folders", "diff_runs", "write_diff"]

_STATUS = ("fibre", "speed_class", "meets_targets")
_CONTEXT = (
    "village_name",
    "kind",
    "township_code",
    "county_code",
    "fibre_basis",
    "fibre_asset_id",
    "tests",
    "download_median_mbps",
    "corrections",
)
_FIBRE_RULES = ("targets.fibre_share", "max_distance_m", "operational", "status", "kind", "value")
_SPEED_RULES = (
    "targets.village_download_mbps",
    "targets.community_download_mbps",
    "min_tests",
    "min_devices",
)


@dataclass(frozen=True)
class DiffResult:
    """What changed between two runs, as :func:`diff_runs` finds it."""

    #: One row per changed village: change, the status columns _a/_b, why, context of run B.
    villages: pd.DataFrame
    #: level -> one row per area: villages, fibre and speed shares in A and B and the change.
    areas: dict[str, pd.DataFrame]
    #: Parameters that differ between the runs: key, a, b; an input's path is compared by the
    #: content the run read there and shown as ``path (sha256 1a2b3c4d5e6f…)``.
    parameters: pd.DataFrame


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested manifest parameters as dotted keys (``fibre[0].max_distance_m``)."""
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            out.update(_flat(v, f"{prefix}[{i}]"))
    else:
        out[prefix] = value
    return out


def _input_hashes(manifest: dict[str, Any]) -> dict[str, str | None]:
    """Each input's path as the manifest writes it (the text its ``parameters`` hold) -> the
    sha256 of what the run read there."""
    return {i["path"]: i.get("sha256") for i in manifest.get("inputs", [])}


def _with_hash(path: Any, hashes: dict[str, str | None]) -> Any:
    """``path (sha256 1a2b3c4d5e6f…)`` for an input path, the value itself otherwise."""
    if not isinstance(path, str) or hashes.get(path) is None:
        return path
    return f"{path} (sha256 {str(hashes[path])[:12]}…)"


def _changed_parameters(a: dict[str, Any], b: dict[str, Any]) -> pd.DataFrame:
    """The parameters that differ, an input's path by the content the run read there."""
    fa, fb = _flat(a.get("parameters", {})), _flat(b.get("parameters", {}))
    ha, hb = _input_hashes(a), _input_hashes(b)
    skip = ("out", "name", "provenance", "base")
    rows = []
    for k in sorted(set(fa) | set(fb)):
        va, vb = fa.get(k), fb.get(k)
        if k.rsplit(".", 1)[-1] in skip:
            continue
        da, db = (h.get(v) if isinstance(v, str) else None for v, h in ((va, ha), (vb, hb)))
        same = da == db if da is not None or db is not None else va == vb
        if not same:
            rows.append({"key": k, "a": _with_hash(va, ha), "b": _with_hash(vb, hb)})
    return pd.DataFrame(rows, columns=["key", "a", "b"])


def _changed_inputs(a: dict[str, Any], b: dict[str, Any]) -> set[str]:
    ha = {i["layer"]: i.get("sha256") for i in a.get("inputs", [])}
    hb = {i["layer"]: i.get("sha256") for i in b.get("inputs", [])}
    return {layer for layer in set(ha) | set(hb) if ha.get(layer) != hb.get(layer)}


def _rules(params: pd.DataFrame, names: tuple[str, ...]) -> list[str]:
    return [
        f"{k}: {a} -> {b}"
        for k, a, b in params.itertuples(index=False)
        if any(k == n or k.endswith("." + n) or k.startswith(n) for n in names)
    ]


def _same(a: Any, b: Any) -> bool:
    if pd.isna(a) and pd.isna(b):
        return True
    if pd.isna(a) or pd.isna(b):
        return False
    return bool(a == b)


def _why(ra: pd.Series, rb: pd.Series, params: pd.DataFrame, inputs: set[str]) -> str:
    reasons: list[str] = []
    if not _same(ra.get("corrections"), rb.get("corrections")):
        reasons.append(f"correction: {rb.get('corrections') or 'override removed'}")
    fibre_changed = not _same(ra["fibre"], rb["fibre"])
    speed_changed = not _same(ra["speed_class"], rb["speed_class"])
    if fibre_changed or not _same(ra.get("fibre_basis"), rb.get("fibre_basis")):
        asset_a, asset_b = ra.get("fibre_asset_id"), rb.get("fibre_asset_id")
        basis_a, basis_b = ra.get("fibre_basis"), rb.get("fibre_basis")
        if "register" in (basis_a, basis_b) and basis_a != basis_b:
            reasons.append(f"register_table: fibre basis {basis_a} -> {basis_b}")
        elif pd.isna(asset_a) and not pd.isna(asset_b):
            reasons.append(f"new_asset: {asset_b} ({basis_b})")
        elif not pd.isna(asset_a) and pd.isna(asset_b):
            reasons.append(f"asset_gone: {asset_a} no longer counts")
        elif not _same(asset_a, asset_b):
            reasons.append(f"asset_changed: {asset_a} -> {asset_b}")
        elif basis_a != basis_b:
            reasons.append(f"fibre_basis: {basis_a} -> {basis_b}")
        reasons += [f"rule_changed: {r}" for r in _rules(params, _FIBRE_RULES)]
        if not reasons:
            changed = sorted(layer for layer in inputs if layer.startswith("fibre"))
            if changed:
                reasons.append(f"input_changed: {', '.join(changed)}")
    if speed_changed:
        before = len(reasons)
        ta, tb = ra.get("tests"), rb.get("tests")
        ta, tb = (0 if pd.isna(ta) else int(ta)), (0 if pd.isna(tb) else int(tb))
        if tb > ta:
            reasons.append(f"more_tests: {ta} -> {tb}")
        elif tb < ta:
            reasons.append(f"fewer_tests: {ta} -> {tb}")
        elif not _same(ra.get("download_median_mbps"), rb.get("download_median_mbps")):
            reasons.append(
                f"median_changed: {ra.get('download_median_mbps')} -> "
                f"{rb.get('download_median_mbps')} Mbps"
            )
        reasons += [f"rule_changed: {r}" for r in _rules(params, _SPEED_RULES)]
        if "speed" in inputs and len(reasons) == before:
            reasons.append("input_changed: speed")
    return "; ".join(reasons) or "unexplained by the recorded inputs and parameters"


def diff_runs(
    villages_a: pd.DataFrame,
    villages_b: pd.DataFrame,
    *,
    manifest_a: dict[str, Any] | None = None,
    manifest_b: dict[str, Any] | None = None,
) -> DiffResult:
    """Villages and areas whose status changed from run A to run B, with reasons.

    Parameters
    ----------
    villages_a, villages_b
        The village tables of the two runs (:func:`ruralcov.runfolder.read_villages`).
    manifest_a, manifest_b
        Their manifests: the parameters and input hashes that explain a change.

    Returns
    -------
    DiffResult
        Changed villages with the reasons the runs support, per-area changes in share by
        each run's own target, and the parameters that differ.
    """
    manifest_a, manifest_b = manifest_a or {}, manifest_b or {}
    params = _changed_parameters(manifest_a, manifest_b)
    inputs = _changed_inputs(manifest_a, manifest_b)
    target_a = manifest_a.get("targets", {}).get("fibre_share", 0.98)
    target_b = manifest_b.get("targets", {}).get("fibre_share", 0.98)
    levels = [lv for lv in present_levels(villages_a) if lv in present_levels(villages_b)]
    areas = {
        level: _area_changes(villages_a, villages_b, level, target_a, target_b)
        for level in LEVELS
        if level in levels
    }
    return DiffResult(villages=_village_changes(villages_a, villages_b, params, inputs),
                      areas=areas, parameters=params)


def diff_folders(run_a: Path | str, run_b: Path | str) -> DiffResult:
    """What changed from run folder A to run folder B: ``ruralcov diff RUN_A RUN_B``.

    Reads each folder's village table and manifest (:mod:`ruralcov.runfolder`; no input of
    either run is read, so the folders may have been copied or moved) and compares them with
    :func:`diff_runs`.

    Parameters
    ----------
    run_a, run_b
        The earlier and the later run folder.

    Returns
    -------
    DiffResult
        As :func:`diff_runs`; :func:`write_diff` writes it, :func:`change_counts` counts it.

    Raises
    ------
    InputError
        When a folder is not a run folder, or its manifest or village table cannot be read.

    Examples
    --------
    >>> diff = diff_folders("out/2026q2", "out/2026q3")  # doctest: +SKIP
    >>> diff.villages[["village_code", "change", "why"]]  # doctest: +SKIP
    """
    return diff_runs(read_villages(run_a), read_villages(run_b),
                     manifest_a=read_manifest(run_a), manifest_b=read_manifest(run_b))


def _village_changes(villages_a: pd.DataFrame, villages_b: pd.DataFrame, params: pd.DataFrame,
                     inputs: set[str]) -> pd.DataFrame:
    """One row per village whose status changed, or that entered or left the register."""
    a = villages_a.set_index("village_code", drop=False)
    b = villages_b.set_index("village_code", drop=False)
    rows: list[dict[str, Any]] = []
    for code in sorted(set(a.index) | set(b.index), key=str):
        in_a, in_b = code in a.index, code in b.index
        ra = a.loc[code] if in_a else None
        rb = b.loc[code] if in_b else None
        if ra is not None and rb is not None:
            if all(_same(ra[c], rb[c]) for c in _STATUS):
                continue
            change, why = "changed", _why(ra, rb, params, inputs)
        else:
            change = "added" if in_b else "removed"
            why = "register entry " + ("added" if in_b else "removed")
        ref: pd.Series = rb if rb is not None else ra  # type: ignore[assignment]
        row: dict[str, Any] = {"village_code": code, "change": change}
        for col in _STATUS:
            row[f"{col}_a"] = ra[col] if ra is not None else None
            row[f"{col}_b"] = rb[col] if rb is not None else None
        row["why"] = why
        for col in _CONTEXT:
            row[col] = ref.get(col)
        rows.append(row)
    columns = [
        "village_code",
        "change",
        *(f"{c}_{s}" for c in _STATUS for s in "ab"),
        "why",
        *_CONTEXT,
    ]
    return pd.DataFrame(rows, columns=columns)


#: Area figures compared between the runs, each with its change.
_AREA_CHANGES = ("fibre_villages", "fibre_share", "fibre_gap_villages", "speed_meets",
                 "speed_share")


def _area_changes(villages_a: pd.DataFrame, villages_b: pd.DataFrame, level: str,
                  target_a: float, target_b: float) -> pd.DataFrame:
    """The areas of a level whose villages, fibre villages or speed count changed, from
    each run's villages summarised with its own target."""
    sa = aggregate.summarise(villages_a, level=level, fibre_target=target_a)
    sb = aggregate.summarise(villages_b, level=level, fibre_target=target_b)
    keep = ["code", "villages", *_AREA_CHANGES]
    merged = sa[keep].merge(sb[keep], on="code", how="outer", suffixes=("_a", "_b"))
    for col in _AREA_CHANGES:
        merged[f"{col}_change"] = merged[f"{col}_b"] - merged[f"{col}_a"]
    changed = (
        (merged["fibre_villages_change"].fillna(1) != 0)
        | (merged["speed_meets_change"].fillna(1) != 0)
        | (merged["villages_a"] != merged["villages_b"])
    )
    return merged[changed].sort_values("code").reset_index(drop=True)


def write_diff(diff: DiffResult, out: Path | str) -> list[Path]:
    """Write the diff's tables as the run's tables are written (:func:`ruralcov.report.
    write_csv`).

    Parameters
    ----------
    diff
        What :func:`diff_runs` returned.
    out
        The folder to write into; made when missing.

    Returns
    -------
    list of pathlib.Path
        ``diff_villages.csv``, ``diff_parameters.csv`` and one ``diff_<level>.csv`` per level.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tables = {"diff_villages": diff.villages, "diff_parameters": diff.parameters}
    tables.update({f"diff_{level}": frame for level, frame in diff.areas.items()})
    return [write_csv(frame.astype(object).where(frame.notna(), None), out / f"{name}.csv")
            for name, frame in tables.items()]


def change_counts(diff: DiffResult) -> dict[str, int]:
    """Headline counts of a diff, for the command line.

    Parameters
    ----------
    diff
        What :func:`diff_runs` returned.

    Returns
    -------
    dict
        ``villages_changed``, ``gained_fibre``, ``lost_fibre``, ``speed_class_changed``,
        ``added`` and ``removed``.
    """
    v = diff.villages
    changed = v[v["change"] == "changed"]
    fa = changed["fibre_a"].astype("boolean")
    fb = changed["fibre_b"].astype("boolean")
    return {
        "villages_changed": int(len(changed)),
        "gained_fibre": int((~fa & fb).sum()),
        "lost_fibre": int((fa & ~fb).sum()),
        "speed_class_changed": int(
            (changed["speed_class_a"].astype(str) != changed["speed_class_b"].astype(str)).sum()
        ),
        "added": int((v["change"] == "added").sum()),
        "removed": int((v["change"] == "removed").sum()),
    }
