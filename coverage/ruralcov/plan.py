"""The fibre extension plan of a run folder: ``ruralcov plan RUN``.

:func:`plan_run` reads the run folder (:func:`ruralcov.runfolder.read_run`: its villages, the
fibre access points the run read and its target, never the run's input files), plans with
the engine of :mod:`ruralcov.planner`, and adds the plan to the folder: ``tables/plan.csv``,
``tables/plan_summary_<level>.csv``, ``plan.parquet`` (the links, drawn on the county maps), a
section of ``report.html`` and a ``plan`` entry in ``manifest.json``. :func:`read_codes` and
:func:`points_from_file` read the command's own inputs (the exclusion list, the
village-committee points).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from html import escape as _e
from pathlib import Path
from typing import Any

import pandas as pd

from ruralcov import io, schema
from ruralcov.errors import InputError, SchemaError
from ruralcov.io import sha256_file
from ruralcov.outdir import write_atomic
from ruralcov.planner import PLANNED, Plan, PlanOptions, plan_result
from ruralcov.report import add_report_section, html_table, write_csv, write_manifest
from ruralcov.runfolder import read_manifest, read_run, redraw_maps

__all__ = [
    "plan_run",
    "plan_section_html",
    "points_from_file",
    "read_codes",
    "write_plan",
]

#: The files a plan owns in a run folder (an earlier plan's are removed before writing).
_PLAN_FILE = re.compile(r"tables/plan\.csv|tables/plan_summary_[a-z]+\.csv|plan\.parquet")
#: Decimals of the plan's own columns in its CSV files (the rest as every table of a run).
_ROUNDED = {"_km": 3, "cost": 2}  # kilometres to the metre, money to the cent
_LONLAT_DECIMALS = 7  # about 1 cm


def _csv(frame: pd.DataFrame, path: Path) -> None:
    """CSV as the run's other tables (:func:`ruralcov.report.write_csv`), written whole or
    not at all, with lengths, costs and coordinates rounded."""
    out = pd.DataFrame(frame).copy()
    for col in out.columns:
        if col.endswith("_km"):
            out[col] = out[col].round(_ROUNDED["_km"])
        elif col.endswith("cost"):
            out[col] = out[col].round(_ROUNDED["cost"])
        elif col in ("lon", "lat"):
            out[col] = out[col].round(_LONLAT_DECIMALS)
    write_atomic(path, lambda tmp: write_csv(out, tmp))


def _fmt_km(value: float) -> str:
    return f"{value:,.1f}"


def plan_section_html(plan: Plan) -> str:
    """The plan as an HTML section for ``report.html`` (every value escaped).

    Parameters
    ----------
    plan
        What :func:`ruralcov.planner.plan_extension` returned.

    Returns
    -------
    str
        One ``<section id="plan">`` element (:func:`ruralcov.report.add_report_section`).
    """
    s = plan.summary
    o = plan.options
    below = s[s["fibre_gap_villages"] > 0]
    fibre = plan.links[plan.links["status"] == PLANNED]
    unit = f" {o.currency}" if o.currency else ""
    cost = (
        f" at {o.cost_per_km:,.2f}{unit} per km: {fibre['cost'].sum():,.0f}{unit}"
        if o.cost_per_km is not None
        else " (no cost per km given)"
    )
    rules = [f"target {100 * plan.target:g} %", f"route factor {o.route_factor:g}"]
    if o.connect_all:
        rules.append("connect all")
    if o.exclude:
        rules.append(f"{len(o.exclude)} villages excluded")
    if o.max_link_km is not None:
        rules.append(f"maximum link {o.max_link_km:g} km")
    if o.budget is not None:
        rules.append(f"budget {o.budget:,.0f} per area")
    parts = [
        '<section id="plan">',
        "<h2>Fibre extension plan</h2>",
        f"<p>{_e('; '.join(rules))}. {len(below):,} of {len(s):,} {_e(o.level)} areas are "
        f"below the target. The plan connects {len(fibre):,} villages with "
        f"{_e(_fmt_km(fibre['link_km'].sum()))} km of cable{_e(cost)}; "
        f"{int(s['target_reached'].sum()):,} of {len(s):,} areas are at or above the target "
        "afterwards; "
        f"{int(s['flagged_villages'].sum()):,} villages are flagged for wireless or "
        "satellite.</p>",
        "<p>Each step connects the unconnected village whose settlement point is nearest to the "
        "network (access points, fibre villages, villages planned before it): Prim's minimum "
        "spanning tree grown from what exists. Cable length = straight line in the area's "
        "metric CRS × route factor.</p>",
    ]
    shown = s[(s["planned_villages"] > 0) | (s["fibre_gap_villages"] > 0)]
    shown = shown.sort_values(["planned_km", "code"], ascending=[False, True], kind="stable")
    shown = shown.assign(
        planned_km=[f"{v:,.1f}" for v in shown["planned_km"]],
        planned_cost=["" if pd.isna(v) else f"{v:,.0f}" for v in shown["planned_cost"]],
    )
    if len(shown):
        parts.append(
            html_table(
                shown,
                columns=[
                    "code",
                    "name",
                    "villages",
                    "fibre_share",
                    "fibre_gap_villages",
                    "planned_villages",
                    "planned_km",
                    "planned_cost",
                    "fibre_share_after",
                    "flagged_villages",
                    "stop_reason",
                ],
            )
        )
    parts.append(
        f'<p>Village by village: <a href="tables/plan.csv">tables/plan.csv</a>; per area: '
        f'<a href="tables/plan_summary_{_e(o.level)}.csv">tables/plan_summary_'
        f'{_e(o.level)}.csv</a>; the links as lines: <a href="plan.parquet">plan.parquet</a> '
        "(GeoParquet).</p>"
    )
    parts.append("</section>")
    return "\n".join(parts)


def _options_json(plan: Plan) -> dict[str, Any]:
    raw = dataclasses.asdict(plan.options)
    raw["exclude"] = sorted(plan.options.exclude)
    raw["target"] = plan.target
    return raw


def write_plan(plan: Plan, folder: Path | str) -> list[Path]:
    """Add the plan to a run folder and return the files written.

    Writes ``tables/plan.csv`` (every planned and flagged village),
    ``tables/plan_summary_<level>.csv`` and ``plan.parquet`` (the proposed fibre links only,
    for the maps) and puts a plan section into ``report.html``. ``manifest.json`` gets a
    ``plan`` entry with the options and the sha256 of each plan file, and the new hash of
    ``report.html`` under ``outputs``. The plan files stay out of ``outputs`` on purpose:
    that list is what ``ruralcov run`` writes and ``ruralcov verify`` recomputes, and a plan
    is a later step with options of its own. The files of an earlier plan are replaced,
    including a summary of another level.

    Parameters
    ----------
    plan
        What :func:`ruralcov.planner.plan_extension` returned.
    folder
        The run folder.

    Returns
    -------
    list of pathlib.Path
        The plan files, and ``report.html`` when the folder has one.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    for old in (manifest.get("plan") or {}).get("outputs", {}):
        if _PLAN_FILE.fullmatch(str(old)):  # never anything the run itself wrote
            (folder / old).unlink(missing_ok=True)
    level = plan.options.level
    written = [
        folder / "tables" / "plan.csv",
        folder / "tables" / f"plan_summary_{level}.csv",
        folder / "plan.parquet",
    ]
    _csv(plan.links.drop(columns="geometry"), written[0])
    _csv(plan.summary, written[1])
    fibre = plan.links[plan.links["status"] == PLANNED].reset_index(drop=True)
    write_atomic(written[2], lambda tmp: fibre.to_parquet(tmp, index=False))
    report = folder / "report.html"
    if report.is_file():
        add_report_section(report, "plan", plan_section_html(plan))
        outputs = dict(manifest.get("outputs", {}))
        outputs["report.html"] = sha256_file(report)
        manifest["outputs"] = dict(sorted(outputs.items()))
    is_fibre = plan.links["status"] == PLANNED
    manifest["plan"] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": _options_json(plan),
        "planned_villages": int(is_fibre.sum()),
        "planned_km": float(plan.links.loc[is_fibre, "link_km"].sum()),
        "flagged_villages": int((~is_fibre).sum()),
        "outputs": {p.relative_to(folder).as_posix(): sha256_file(p) for p in written},
    }
    write_manifest(folder, manifest)
    return written if not report.is_file() else [*written, report]


def read_codes(path: Path | str) -> frozenset[str]:
    """Village codes from a text file (the exclusion list of ``ruralcov plan``).

    Parameters
    ----------
    path
        A UTF-8 text file: one code per line (first comma-separated field); blank lines,
        ``#`` comments and a header ``code`` / ``village_code`` are skipped.

    Returns
    -------
    frozenset of str
        The codes. Codes a spreadsheet changed stop the plan
        (:func:`ruralcov.schema.read_codes`, rows are lines).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"exclusion list {str(path)!r} not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text; save the exclusion list as UTF-8") from exc
    codes: list[str | None] = []  # one per line, so that an error names the line
    for line in text.splitlines():
        field_ = line.split("#", 1)[0].split(",", 1)[0].strip().strip('"')
        keep = field_ and field_.lower() not in ("code", "village_code")
        codes.append(field_ if keep else None)
    checked = schema.read_codes(
        pd.Series(codes, dtype=object), source=f"exclusion list ({path.name})", column="code"
    )
    return frozenset(checked.dropna())


def plan_run(
    folder: Path | str,
    *,
    options: PlanOptions | None = None,
    points: Mapping[str, Any] | pd.Series | None = None,
    progress: Callable[[str], None] | None = None,
    write: bool = True,
    maps: bool | None = None,
) -> Plan:
    """Plan from a run folder and, with ``write``, add the plan to it.

    The plan is made from the folder alone (:func:`ruralcov.runfolder.read_run` without the
    tables): the run's inputs are never read, so a run folder copied elsewhere plans the same.

    Parameters
    ----------
    folder
        A run folder (:func:`ruralcov.runfolder.read_run`; its inputs need not exist).
    options, progress
        As :func:`ruralcov.planner.plan_extension` takes them.
    points
        Village-committee points by village code (:func:`points_from_file`).
    write
        Add the plan's files to the folder (:func:`write_plan`).
    maps
        With ``write``, draw the maps again with the plan's links on the county maps
        (:func:`ruralcov.runfolder.redraw_maps`); None: when the run drew maps.

    Returns
    -------
    Plan
        As :func:`ruralcov.planner.plan_extension` returns it.

    Examples
    --------
    >>> plan = plan_run("out/demo", options=PlanOptions(cost_per_km=60_000))  # doctest: +SKIP
    >>> plan.summary[["code", "planned_villages", "planned_km"]].head()  # doctest: +SKIP
    """
    folder = Path(folder)
    result = read_run(folder, tables=False)
    plan = plan_result(result, options=options, points=points, progress=progress)
    if write:
        write_plan(plan, folder)
        if maps or (maps is None and _has_maps(folder)):
            redraw_maps(folder)  # draws plan.parquet on the county maps
    return plan


def _has_maps(folder: Path) -> bool:
    """True when the run drew its maps (not only the "maps were skipped" page)."""
    maps_dir = folder / "maps"
    return maps_dir.is_dir() and any(p.name != "index.html" for p in maps_dir.iterdir())


def points_from_file(
    path: Path | str,
    *,
    code: str = "code",
    lon: str | None = None,
    lat: str | None = None,
    crs_text: str | None = None,
    encoding: str = "utf-8",
    layer: str | None = None,
) -> pd.Series:
    """Village-committee points by village code from any readable point file.

    Parameters
    ----------
    path
        A point file :func:`ruralcov.io.read_layer` reads (GeoPackage, GeoJSON, CSV, ...).
    code
        Column of village codes.
    lon, lat
        Coordinate columns of a CSV.
    crs_text
        The CRS of a file that does not say; default EPSG:4326.
    encoding
        Text encoding of a CSV.
    layer
        Layer of a multi-layer file.

    Returns
    -------
    pandas.Series
        Shapely points (EPSG:4326) by village code, the first of each code.
    """
    frame, _ = io.read_layer(
        path,
        layer=layer,
        crs=crs_text or "EPSG:4326",
        encoding=encoding,
        lon=lon,
        lat=lat,
        name="points",
    )
    if code not in frame.columns:
        raise SchemaError(
            f"points: code column {code!r} not found in {path}; the file has "
            f"{list(frame.columns)[:20]}; set it with --points-code"
        )
    ok = frame.geometry.notna() & (frame.geometry.geom_type == "Point")
    codes = schema.read_codes(frame[code], source=f"points ({Path(path).name})", column=code)[ok]
    return (
        pd.Series(frame.geometry[ok].to_numpy(dtype=object), index=codes.to_numpy())
        .groupby(level=0)
        .first()
    )
