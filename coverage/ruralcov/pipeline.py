"""``analyse``: the one function that wires reading, validation, joins, classification and
aggregation together into a :class:`CoverageResult`.

CLI, notebooks, maps and reports consume only a ``CoverageResult`` (or a run folder written from
one); the engine steps it calls are pure functions in ``join``, ``classify`` and ``aggregate``,
and the measurement step is :func:`ruralcov.measure.speed_statistics`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from ruralcov import aggregate, classify, crs, join, measure, stream, units
from ruralcov.areas import LEVELS, AreaUnions
from ruralcov.config import Config, replace
from ruralcov.io import sha256_file
from ruralcov.loaders import InputRecord, load_fibre, load_villages, preset_columns
from ruralcov.schema import VILLAGE_COLUMNS, present_levels
from ruralcov.validate import check_positions, concat_issues, row_issues

__all__ = ["CoverageResult", "InputRecord", "STEPS", "analyse", "empty_assets"]

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
    #: Overrides applied from the corrections ledger (corrections.APPLIED_COLUMNS); empty
    #: when none is configured.
    corrections: pd.DataFrame | None = None
    #: level -> trend table (trends.TREND_COLUMNS) when the measurement source has periods.
    trends: dict[str, pd.DataFrame] | None = None
    #: The speed tests per county in 1 km cells of ``metric_crs`` (cells.CELL_COLUMNS), for
    #: the county maps; None when not computed (no maps, no per-test source, no counties).
    cells: pd.DataFrame | None = None
    #: The unions of the townships' and counties' village polygons, started in threads when
    #: the villages were read (``analyse(..., area_unions=True)``); taken by ``results.gpkg``
    #: and the maps (:func:`ruralcov.areas.level_unions`), which make them otherwise.
    area_unions: AreaUnions | None = field(default=None, compare=False, repr=False)


def empty_assets() -> gpd.GeoDataFrame:
    """A frame of fibre assets without rows, with the columns of ``fibre_points``/``_routes``.

    Returns
    -------
    geopandas.GeoDataFrame
        ``asset_id, status, operational, source, max_distance_m, nearby_m`` and a geometry in
        EPSG:4326.
    """
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


@dataclass
class _Found:
    """The findings and input records gathered step by step."""

    issues: list[pd.DataFrame] = field(default_factory=list)
    records: list[InputRecord] = field(default_factory=list)


def _capability(config: Config, villages: gpd.GeoDataFrame, target: np.ndarray,
                found: _Found) -> gpd.GeoDataFrame:
    """Capability records joined by code and the five-way class (:mod:`ruralcov.capability`)."""
    from ruralcov import capability as cap

    loaded = []
    for i, source in enumerate(config.capability):
        one = cap.load_capability(source, i, villages["village_code"],
                                  polygons=villages.geometry.values)
        found.issues.append(one.issues)
        found.records.append(one.record)
        loaded.append(one.frame)
    best = cap.village_capability(pd.concat(loaded, ignore_index=True), villages["village_code"])
    for col in best.columns:
        villages[col] = best[col].to_numpy()
    measured = villages["speed_class"].to_numpy(dtype=object)
    if config.speed is None:  # no measurement at all: nothing is measured to meet
        measured = np.full(len(villages), "insufficient_data", dtype=object)
    villages["measured_class"] = measured
    classes, cap_class = cap.five_way_class(measured, villages["capability_download_mbps"],
                                            target)
    villages["capability_class"] = cap_class
    villages["speed_class"] = classes
    basis = config.run.speed_basis or cap.DEFAULT_BASIS
    villages["speed_basis"] = basis
    villages["speed_counts"] = cap.counts_for_basis(classes, basis=basis)
    villages["meets_targets"] = villages["fibre"].astype(bool) & villages["speed_counts"]
    return villages


def _check_positions(
    config: Config, villages: gpd.GeoDataFrame, fibre_points: gpd.GeoDataFrame | None
) -> pd.DataFrame:
    """Swapped lon/lat (error) and GCJ-02 declared as WGS 84 (warning), per point layer:
    the fibre access points, or (``fibre_points`` None) a sample of the speed tests."""
    polys = villages.geometry.values
    found = []
    if fibre_points is None:
        sample = stream.sample_points(config.speed)
        if sample is not None and config.speed is not None:
            found.append(check_positions(*sample, villages=polys, layer="speed",
                                         path=config.speed.path, crs=config.speed.crs))
    else:
        for i, f in enumerate(config.fibre):
            pts = fibre_points[fibre_points["source"] == f"fibre[{i}]"].geometry
            if len(pts):
                found.append(check_positions(pts.x.to_numpy(), pts.y.to_numpy(), villages=polys,
                                             layer=f"fibre[{i}]", path=f.path, crs=f.crs))
    return concat_issues(found)


def _check_units_early(config: Config) -> None:
    """The unit check (:func:`ruralcov.units.check_plausible`) on the first rows of a
    streamed tests file, so that a file in kbit/s stops the run before a long stream; the
    engines decide again on the complete counts (the loader reads the whole file at once)."""
    speed = config.speed
    sample = stream.sample_tally(speed)
    if sample is not None:
        units.check_plausible(sample, column=speed.download, path=speed.path,
                              unit=speed.download_unit, sample=True)


def _corrections(config: Config, villages: gpd.GeoDataFrame, found: _Found
                 ) -> tuple[gpd.GeoDataFrame, pd.DataFrame | None]:
    """The corrections ledger applied after classification (``[corrections]``), if any."""
    from ruralcov import corrections as ledger_mod

    c = config.corrections
    if c is None or c.path is None:
        villages["corrections"] = None
        return villages, None
    ledger = ledger_mod.check_ledger(
        ledger_mod.read_ledger(c), villages["village_code"], path=c.path
    )
    out, applied = ledger_mod.apply_corrections(villages, ledger)
    found.issues.append(ledger_mod.applied_issues(applied))
    found.records.append(InputRecord(layer="corrections", path=c.path,
                                     sha256=sha256_file(c.path), rows_read=len(ledger),
                                     rows_used=len(ledger)))
    return gpd.GeoDataFrame(out, geometry=villages.geometry, crs=villages.crs), applied


def analyse(config: Config, *, progress: Callable[[str], None] | None = None,
            cells: bool | None = None, area_unions: bool = False) -> CoverageResult:
    """Read every input of ``config`` and compute the coverage of each village.

    Parameters
    ----------
    config
        The run's configuration.
    progress
        Called with each name in :data:`STEPS` as that step starts.
    cells
        Count the speed tests in the 1 km cells the county maps draw
        (:attr:`CoverageResult.cells`); None: when ``config.maps.enabled``.
    area_unions
        Start the unions of the townships' and counties' village polygons (the areas of
        ``results.gpkg`` and the maps) in threads as soon as the villages are read, beside
        the speed tests (:attr:`CoverageResult.area_unions`); the writers make them
        otherwise. ``ruralcov run`` and ``demo`` ask for them.

    Returns
    -------
    CoverageResult
        Everything the run produced.

    Raises
    ------
    RuralcovError
        For anything the user must fix; row-level problems become issues instead.
    """
    tell = progress or (lambda step: None)
    measure.check_engine(config)  # a cluster that cannot run stops the run before any reading
    config = _prepared(config)
    found = _Found()
    tell("villages")
    villages = _villages(config, found)
    unions = _area_unions(villages) if area_unions else None
    try:
        return _analyse_villages(config, villages, found, tell, cells=cells, unions=unions)
    except BaseException:
        if unions is not None:  # the run stops: no union not yet started is made
            unions.cancel()
        raise


def _prepared(config: Config) -> Config:
    """``config`` with the periods of a period column made explicit and a preset's columns
    spelt as the measurement file spells them."""
    if config.speed is not None and config.speed.period:  # periods from a column of the file
        from ruralcov.trends import with_period_column

        config = with_period_column(config)
    if config.speed is not None:
        config = replace(config, speed=preset_columns(config.speed, name="speed"))
    return config


def _area_unions(villages: gpd.GeoDataFrame) -> AreaUnions | None:
    """The unions of the areas of every level of :data:`ruralcov.areas.LEVELS` the register
    has, started; None when it has none."""
    levels = {level: villages[f"{level}_code"] for level in LEVELS
              if f"{level}_code" in villages.columns and villages[f"{level}_code"].notna().any()}
    return AreaUnions(villages.geometry.to_numpy(), levels) if levels else None


def _analyse_villages(config: Config, villages: gpd.GeoDataFrame, found: _Found,
                      tell: Callable[[str], None], *, cells: bool | None,
                      unions: AreaUnions | None) -> CoverageResult:
    """:func:`analyse` once the villages are read."""
    bounds = villages.geometry[villages["has_geometry"]].total_bounds if (
        villages["has_geometry"].any()) else None
    metric = crs.metric_crs(tuple(bounds) if bounds is not None else (-1, -1, 1, 1))
    code_rank = join.code_priority(villages["village_code"])
    tell("fibre")
    evidence, fibre_points, fibre_routes = _fibre(config, villages, metric, found)
    tell("speed tests")
    target = np.where(villages["kind"] == "community", config.targets.community_download_mbps,
                      config.targets.village_download_mbps).astype(float)
    # The speed of one period on these villages and this fibre: the headline's, and each
    # earlier period's for the trends (villages and fibre have no period: read and joined once).
    speed_of = functools.partial(_speed_period, villages=villages, evidence=evidence,
                                 code_rank=code_rank, target=target, metric=metric)
    villages, corrections, cell_counts = speed_of(
        config, found, cells=config.maps.enabled if cells is None else cells, tell=tell)
    tell("aggregate")
    summaries, level_names = _summaries(villages, config)
    trends = _trends(config, villages, summaries, level_names, found, speed_of=speed_of)
    return CoverageResult(
        config=config,
        villages=villages,
        summaries=summaries,
        gaps=_gaps(villages, config),
        issues=concat_issues(found.issues),
        inputs=tuple(found.records),
        headline=aggregate.headline(villages, fibre_target=config.targets.fibre_share),
        fibre_points=fibre_points,
        fibre_routes=fibre_routes,
        metric_crs=metric.to_string(),
        corrections=corrections,
        trends=trends,
        cells=cell_counts,
        area_unions=unions,
    )


def _speed_period(config: Config, found: _Found, *, villages: gpd.GeoDataFrame,
                  evidence: pd.DataFrame, code_rank: np.ndarray, target: np.ndarray,
                  metric: Any, cells: bool, tell: Callable[[str], None] = lambda step: None,
                  ) -> tuple[gpd.GeoDataFrame, pd.DataFrame | None, Any]:
    """One period's measurement joined to the villages and classified with the fibre
    ``evidence``: the classified villages (a new frame; ``villages`` is left as it is), the
    corrections applied and the tests per map cell (None without ``cells``)."""
    if config.speed is not None and config.speed.kind == "tests":
        found.issues.append(_check_positions(config, villages, None))
        _check_units_early(config)
    measured = measure.speed_statistics(
        config, villages, code_rank=code_rank, target=target, metric=metric, cells=cells)
    found.issues.append(measured.issues)
    found.records.extend(measured.records)
    tell("classify")
    classified, corrections = _classify(config, villages.copy(deep=False), evidence,
                                        measured.stats, target, found)
    return classified, corrections, measured.cells


def _villages(config: Config, found: _Found) -> gpd.GeoDataFrame:
    """The register (with its polygons), and whether each village has a geometry."""
    register, boundaries, name_records = load_villages(config)
    villages = register.frame.reset_index(drop=True)
    found.issues += [register.issues] + ([boundaries.issues] if boundaries else [])
    found.records += [register.record] + ([boundaries.record] if boundaries else [])
    found.records += name_records
    has_geometry = villages.geometry.notna() & ~villages.geometry.is_empty
    villages["has_geometry"] = has_geometry.to_numpy()
    found.issues.append(
        row_issues(
            ~has_geometry,
            layer="villages",
            reason="no_geometry",
            severity="info",
            codes=villages["village_code"],
            rows=villages["source_row"].to_numpy(),
            message="village has no polygon; it stays in the denominator without "
            "fibre or speed evidence from the map",
        )
    )
    return villages


def _fibre(config: Config, villages: gpd.GeoDataFrame, metric: Any, found: _Found
           ) -> tuple[pd.DataFrame, gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Each village's fibre evidence, and every fibre point and route read."""
    codes = villages["village_code"]
    points, routes = [empty_assets()], [empty_assets()]
    register_fibre = pd.Series(False, index=villages.index)
    for i, source in enumerate(config.fibre):
        loaded, role = load_fibre(source, i, codes)
        found.issues.append(loaded.issues)
        found.records.append(loaded.record)
        if role == "table":
            said_yes = loaded.frame.groupby("village_code")["has_fibre"].any()
            register_fibre |= codes.map(said_yes).fillna(False).astype(bool)
        else:
            frame = loaded.frame
            points.append(frame[frame["role"] == "points"].drop(columns="role"))
            routes.append(frame[frame["role"] == "routes"].drop(columns="role"))
    fibre_points = pd.concat(points, ignore_index=True)
    fibre_routes = pd.concat(routes, ignore_index=True)
    found.issues.append(_check_positions(config, villages, fibre_points))
    op_points = fibre_points[fibre_points["operational"].astype(bool)]
    op_routes = fibre_routes[fibre_routes["operational"].astype(bool)]
    evidence = classify.fibre_evidence(
        np.asarray(villages.geometry.to_crs(metric).values, dtype=object),
        register_fibre=register_fibre.to_numpy(),
        points=np.asarray(op_points.geometry.to_crs(metric).values, dtype=object),
        point_ids=op_points["asset_id"].to_numpy(dtype=object),
        point_max_distance=op_points["max_distance_m"].to_numpy(dtype=float),
        routes=np.asarray(op_routes.geometry.to_crs(metric).values, dtype=object),
        route_ids=op_routes["asset_id"].to_numpy(dtype=object),
        route_nearby=op_routes["nearby_m"].to_numpy(dtype=float),
    )
    return evidence, fibre_points, fibre_routes


def _classify(config: Config, villages: gpd.GeoDataFrame, evidence: pd.DataFrame,
              stats: pd.DataFrame, target: np.ndarray, found: _Found
              ) -> tuple[gpd.GeoDataFrame, pd.DataFrame | None]:
    """The villages with their evidence, statistics, classes and corrections, in the column
    order of :data:`ruralcov.schema.VILLAGE_COLUMNS`; the corrections applied."""
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
    if speed is not None and speed.kind == "ookla_tiles":  # classed on the weighted mean
        villages["speed_class"] = classify.speed_class(
            villages["tests_weighted"], villages["devices_weighted"],
            villages["download_mean_mbps"], target,
            min_tests=speed.min_tests, min_devices=speed.min_devices,
        )
    villages["meets_targets"] = villages["fibre"] & (villages["speed_class"] == "meets")
    if config.capability:
        villages = _capability(config, villages, target, found)
    villages, corrections = _corrections(config, villages, found)
    for col in VILLAGE_COLUMNS:  # levels the register lacks stay as empty columns
        if col not in villages.columns:
            villages[col] = None
    extra = [c for c in villages.columns if c not in VILLAGE_COLUMNS and c != "geometry"]
    ordered = [*VILLAGE_COLUMNS, *extra]
    villages = gpd.GeoDataFrame(villages[ordered], geometry=villages.geometry, crs="EPSG:4326")
    return villages, corrections


def _summaries(villages: gpd.GeoDataFrame, config: Config
               ) -> tuple[dict[str, pd.DataFrame], dict[str, pd.Series]]:
    """One summary table per level present, and each level's area names."""
    summaries, level_names = {}, {}
    for level in present_levels(villages):
        names = villages.dropna(subset=[f"{level}_code"]).drop_duplicates(f"{level}_code")
        name_map = (
            names.set_index(f"{level}_code")[f"{level}_name"]
            if (f"{level}_name" in villages.columns)
            else None
        )
        summaries[level] = aggregate.summarise(
            villages, level=level, fibre_target=config.targets.fibre_share, names=name_map
        )
        if name_map is not None:
            level_names[level] = name_map
    return summaries, level_names


def _trends(config: Config, villages: gpd.GeoDataFrame, summaries: dict[str, pd.DataFrame],
            level_names: dict[str, pd.Series], found: _Found, *,
            speed_of: Callable[..., tuple[gpd.GeoDataFrame, Any, Any]],
            ) -> dict[str, pd.DataFrame] | None:
    """With periods (quarters, :mod:`ruralcov.trends`): the earlier periods measured and
    classified by ``speed_of`` (:func:`_speed_period` on the headline's villages and fibre),
    each village's and area's trend; None without, or with periods pooled as one source."""
    if config.speed is None or not config.speed.periods or config.speed.pool:
        return None
    from ruralcov import trends as trends_mod

    def period(one: Config) -> tuple[pd.DataFrame, list[InputRecord], pd.DataFrame]:
        # The earlier periods feed the trends only: nothing of theirs is drawn on a map.
        own = _Found()
        classified, _, _ = speed_of(_prepared(one), own, cells=False)
        return classified, own.records, concat_issues(own.issues)

    runs = trends_mod.run_periods(config, villages, analyse=period)
    found.records += runs.records
    found.issues.append(runs.issues)
    villages["speed_period"] = max(config.speed.periods)
    villages["speed_trend"] = trends_mod.village_trend(runs.villages).to_numpy()
    trends = trends_mod.trend_tables(runs.villages, fibre_target=config.targets.fibre_share,
                                     names=level_names)
    for level, trend in trends.items():
        summaries[level]["speed_share_trend"] = summaries[level]["code"].map(
            trends_mod.area_trend_text(trend))
    return trends


def _gaps(villages: gpd.GeoDataFrame, config: Config) -> dict[str, pd.DataFrame]:
    """The villages behind each gap: no fibre, below the speed target, too little data (and
    with capability data, the discrepancies)."""
    table = pd.DataFrame(villages.drop(columns="geometry"))
    in_scope = table["kind"].isin(["village", "community"])
    gaps = {
        "no_fibre": table[(table["kind"] == "village") & ~table["fibre"]],
        "below_speed": table[in_scope & (table["speed_class"] == "below")],
        "insufficient_data": table[in_scope & (table["speed_class"] == "insufficient_data")],
    }
    if config.capability:  # five-way classes: "below" is whatever does not count
        from ruralcov.capability import discrepancies

        gaps["below_speed"] = table[in_scope & ~table["speed_counts"].astype(bool)
                                    & (table["speed_class"] != "insufficient_data")]
        gaps.update(discrepancies(table))
    return {k: v.reset_index(drop=True) for k, v in gaps.items()}
