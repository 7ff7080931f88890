"""``analyse``: the one function that wires reading, validation, joins, classification and
aggregation together into a :class:`CoverageResult`.

CLI, notebooks, maps and reports consume only a ``CoverageResult`` (or a run folder written from
one); the engine steps it calls are pure functions in ``join``, ``classify`` and ``aggregate``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from ruralcov import aggregate, classify, crs, join
from ruralcov.config import Config
from ruralcov.loaders import InputRecord, load_fibre, load_speed_tests, load_villages
from ruralcov.schema import VILLAGE_COLUMNS, present_levels
from ruralcov.validate import concat_issues, row_issues

__all__ = ["CoverageResult", "InputRecord", "STEPS", "analyse"]

#: The steps ``analyse`` reports to its ``progress`` callback, in order.
STEPS: tuple[str, ...] = ("villages", "fibre", "speed tests", "classify", "aggregate")


@dataclass(frozen=True)
class CoverageResult:
    """Everything a run produced; tables, maps and reports are written from this alone."""

    config: Config
    #: One row per register entry: schema.VILLAGE_COLUMNS + ``geometry`` (EPSG:4326, may be None).
    villages: gpd.GeoDataFrame
    #: level -> summary table with schema.SUMMARY_COLUMNS, one row per area of that level.
    summaries: dict[str, pd.DataFrame]
    #: "no_fibre", "below_speed", "insufficient_data" -> village rows (no geometry).
    gaps: dict[str, pd.DataFrame]
    #: validate.ISSUE_FIELDS rows: every finding about the inputs.
    issues: pd.DataFrame
    inputs: tuple[InputRecord, ...]
    #: Overall figures over the whole register: villages, fibre_villages, fibre_share, ...
    headline: dict[str, Any]
    #: All fibre assets read (operational or not), with ``operational`` and ``source`` columns.
    fibre_points: gpd.GeoDataFrame
    fibre_routes: gpd.GeoDataFrame
    #: The metric CRS distances were computed in (EPSG code or PROJ string).
    metric_crs: str


def _empty_assets() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "asset_id": [],
            "status": [],
            "operational": [],
            "source": [],
            "max_distance_m": [],
            "nearby_m": [],
        },
        geometry=gpd.GeoSeries([], crs="EPSG:4326"),
    )


def analyse(config: Config, *, progress: Callable[[str], None] | None = None) -> CoverageResult:
    """Read every input of ``config`` and compute the coverage of each village.

    ``progress`` is called with each name in :data:`STEPS` as that step starts.
    Raises a :class:`~ruralcov.errors.RuralcovError` for anything the user must fix; row-level
    problems become issues instead.
    """
    tell = progress or (lambda step: None)
    targets = config.targets

    tell("villages")
    register, boundaries, name_records = load_villages(config)
    villages = register.frame.reset_index(drop=True)
    issues = [register.issues] + ([boundaries.issues] if boundaries else [])
    records = [register.record] + ([boundaries.record] if boundaries else []) + name_records
    codes = villages["village_code"]
    has_geometry = villages.geometry.notna() & ~villages.geometry.is_empty
    villages["has_geometry"] = has_geometry.to_numpy()
    issues.append(
        row_issues(
            ~has_geometry,
            layer="villages",
            reason="no_geometry",
            severity="info",
            codes=codes,
            rows=villages["source_row"].to_numpy(),
            message="village has no polygon; it stays in the denominator without "
            "fibre or speed evidence from the map",
        )
    )
    bounds = villages.geometry[has_geometry].total_bounds if has_geometry.any() else None
    metric = crs.metric_crs(tuple(bounds) if bounds is not None else (-1, -1, 1, 1))
    polys_m = np.asarray(villages.geometry.to_crs(metric).values, dtype=object)
    code_rank = codes.rank(method="dense").to_numpy()

    tell("fibre")
    points, routes = [_empty_assets()], [_empty_assets()]
    register_fibre = pd.Series(False, index=villages.index)
    for i, source in enumerate(config.fibre):
        loaded, role = load_fibre(source, i, codes)
        issues.append(loaded.issues)
        records.append(loaded.record)
        if role == "table":
            said_yes = loaded.frame.groupby("village_code")["has_fibre"].any()
            register_fibre |= codes.map(said_yes).fillna(False).astype(bool)
        else:
            frame = loaded.frame
            points.append(frame[frame["role"] == "points"].drop(columns="role"))
            routes.append(frame[frame["role"] == "routes"].drop(columns="role"))
    fibre_points = pd.concat(points, ignore_index=True)
    fibre_routes = pd.concat(routes, ignore_index=True)
    op_points = fibre_points[fibre_points["operational"].astype(bool)]
    op_routes = fibre_routes[fibre_routes["operational"].astype(bool)]
    evidence = classify.fibre_evidence(
        polys_m,
        register_fibre=register_fibre.to_numpy(),
        points=np.asarray(op_points.geometry.to_crs(metric).values, dtype=object),
        point_ids=op_points["asset_id"].to_numpy(dtype=object),
        point_max_distance=op_points["max_distance_m"].to_numpy(dtype=float),
        routes=np.asarray(op_routes.geometry.to_crs(metric).values, dtype=object),
        route_ids=op_routes["asset_id"].to_numpy(dtype=object),
        route_nearby=op_routes["nearby_m"].to_numpy(dtype=float),
    )

    tell("speed tests")
    kind = villages["kind"]
    target = np.where(
        kind == "community", targets.community_download_mbps, targets.village_download_mbps
    ).astype(float)
    if config.speed is not None:
        tests = load_speed_tests(config.speed)
        village_of_test = join.assign_points(
            tests.frame.geometry.values, villages.geometry.values, priority=code_rank
        )
        outside = village_of_test < 0
        tests_issues = concat_issues(
            [
                tests.issues,
                row_issues(
                    outside,
                    layer="speed",
                    reason="outside_villages",
                    dropped=True,
                    rows=tests.frame["row"].to_numpy(),
                    message="speed test lies outside every village polygon",
                ),
            ]
        )
        issues.append(tests_issues)
        records.append(
            InputRecord(
                layer="speed",
                path=tests.record.path,
                sha256=tests.record.sha256,
                rows_read=tests.record.rows_read,
                rows_used=tests.record.rows_used - int(outside.sum()),
                dropped={
                    **tests.record.dropped,
                    **({"outside_villages": int(outside.sum())} if outside.any() else {}),
                },
            )
        )
        t = tests.frame
        stats = classify.speed_statistics(
            village_of_test,
            t["download_mbps"].to_numpy(),
            n_villages=len(villages),
            target_mbps=target,
            upload=t["upload_mbps"].to_numpy(),
            latency=t["latency_ms"].to_numpy(),
            device=t["device_id"].to_numpy() if t.attrs.get("has_device") else None,
        )
    else:
        stats = classify.speed_statistics(
            np.empty(0, dtype=np.intp), np.empty(0), n_villages=len(villages), target_mbps=target
        )

    tell("classify")
    for col in evidence.columns:
        villages[col] = evidence[col].to_numpy()
    for col in stats.columns:
        villages[col] = stats[col].to_numpy()
    villages["download_target_mbps"] = target
    speed = config.speed
    villages["speed_class"] = classify.speed_class(
        villages["tests"],
        villages["devices"],
        villages["download_median_mbps"],
        target,
        min_tests=speed.min_tests if speed else 1,
        min_devices=speed.min_devices if speed else 0,
    )
    villages["meets_targets"] = villages["fibre"] & (villages["speed_class"] == "meets")
    for col in VILLAGE_COLUMNS:  # levels the register lacks stay as empty columns
        if col not in villages.columns:
            villages[col] = None
    extra = [c for c in villages.columns if c not in VILLAGE_COLUMNS and c != "geometry"]
    ordered = [*VILLAGE_COLUMNS, *extra]
    villages = gpd.GeoDataFrame(villages[ordered], geometry=villages.geometry, crs="EPSG:4326")

    tell("aggregate")
    summaries = {}
    for level in present_levels(villages):
        names = villages.dropna(subset=[f"{level}_code"]).drop_duplicates(f"{level}_code")
        name_map = (
            names.set_index(f"{level}_code")[f"{level}_name"]
            if (f"{level}_name" in villages.columns)
            else None
        )
        summaries[level] = aggregate.summarise(
            villages, level=level, fibre_target=targets.fibre_share, names=name_map
        )
    table = pd.DataFrame(villages.drop(columns="geometry"))
    in_scope = table["kind"].isin(["village", "community"])
    gaps = {
        "no_fibre": table[(table["kind"] == "village") & ~table["fibre"]],
        "below_speed": table[in_scope & (table["speed_class"] == "below")],
        "insufficient_data": table[in_scope & (table["speed_class"] == "insufficient_data")],
    }
    return CoverageResult(
        config=config,
        villages=villages,
        summaries=summaries,
        gaps={k: v.reset_index(drop=True) for k, v in gaps.items()},
        issues=concat_issues(issues),
        inputs=tuple(records),
        headline=aggregate.headline(villages, fibre_target=targets.fibre_share),
        fibre_points=fibre_points,
        fibre_routes=fibre_routes,
        metric_crs=metric.to_string(),
    )
