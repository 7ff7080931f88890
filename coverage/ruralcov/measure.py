"""The measurement step of a run: per-village speed statistics from the configured source.

Per-test records go through the streaming engine (:mod:`ruralcov.stream`), the Dask engine
(:mod:`ruralcov.distributed`) or, for formats the stream does not read, the whole-file loader
with :func:`ruralcov.classify.speed_statistics`; Ookla tiles through :mod:`ruralcov.ookla`.
Every path returns the same columns, records its input (rows read = used + dropped) and its
findings; a run that draws maps also gets the 1 km cells of the tests (:mod:`ruralcov.cells`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyproj
import shapely

from ruralcov import checks, classify, join, sampling, stream
from ruralcov.cells import CellCollector
from ruralcov.config import Config
from ruralcov.loaders import InputRecord, Loaded, load_speed_tests
from ruralcov.validate import concat_issues, no_issues

__all__ = ["Measurement", "check_engine", "speed_statistics"]


@dataclass(frozen=True)
class Measurement:
    """What the measurement step gives: statistics, findings, input records and cells."""

    #: One row per village: the columns of :func:`ruralcov.classify.speed_statistics`.
    stats: pd.DataFrame
    #: The findings about the measurement input.
    issues: pd.DataFrame
    #: Its input record (none without a measurement source).
    records: tuple[InputRecord, ...]
    #: The 1 km cells of the tests (:mod:`ruralcov.cells`), when asked for and available.
    cells: pd.DataFrame | None = None


def check_engine(config: Config) -> None:
    """Stop before any input is read when the configured engine cannot run (the Dask
    engine's scheduler: :func:`ruralcov.distributed.check_cluster`).

    Parameters
    ----------
    config
        The run's configuration (``[run] engine``).

    Raises
    ------
    ConfigError
        Naming what to fix.
    """
    if config.run.engine == "dask":
        from ruralcov.distributed import check_cluster

        check_cluster(config)


def speed_statistics(
    config: Config, villages: gpd.GeoDataFrame, *, code_rank: np.ndarray, target: np.ndarray,
    metric: Any, cells: bool = False,
) -> Measurement:
    """Per-village statistics from the configured measurement source.

    Parameters
    ----------
    config
        The run's configuration (``[speed]``, ``[run]``, targets).
    villages
        The villages (EPSG:4326), in the order of the result.
    code_rank
        Each village's rank by code: a test on a shared boundary goes to the lowest code.
    target
        Each village's download target (Mbit/s).
    metric
        The run's metric CRS (Ookla tiles are assigned and cells counted in it).
    cells
        Also count per-test sources in 1 km cells (:mod:`ruralcov.cells`), for the maps.

    Returns
    -------
    Measurement
        The statistics of :func:`ruralcov.classify.speed_statistics` (plus the tile columns
        for Ookla tiles; empty ones without a measurement source), the findings, the input
        record and the cells (None unless asked for and the source holds tests).
    """
    speed = config.speed
    if speed is None:
        stats = classify.speed_statistics(
            np.empty(0, dtype=np.intp), np.empty(0), n_villages=len(villages), target_mbps=target
        )
        return Measurement(stats=stats, issues=no_issues(), records=())
    if speed.kind == "ookla_tiles":
        return _ookla_tiles(config, villages, code_rank, metric)
    # The CRS as the result names it (CoverageResult.metric_crs), so that a map converts the
    # cells back exactly.
    metric_name = pyproj.CRS.from_user_input(metric).to_string()
    collector = CellCollector(metric_name) if cells else None
    streamed = _speed_tests(config, villages, code_rank, target, collector)
    if streamed is None:  # a format the stream does not read: the whole file through the loader
        found = _speed_tests_loaded(config, villages, code_rank, target, collector)
    else:
        found = Measurement(stats=streamed.stats, issues=streamed.issues,
                            records=(streamed.record,))
    if collector is None:
        return found
    return Measurement(stats=found.stats, issues=found.issues, records=found.records,
                       cells=collector.cells(villages, found.issues, config))


def _speed_tests(
    config: Config, villages: gpd.GeoDataFrame, code_rank: np.ndarray, target: np.ndarray,
    collector: CellCollector | None,
) -> Any:
    """Per-village speed statistics by the configured engine; None when the stream cannot
    read the input (the caller then loads the whole file)."""
    run = config.run
    if run.engine == "dask":
        from ruralcov.distributed import dask_speed_tests

        return dask_speed_tests(config, villages.geometry.values, priority=code_rank,
                                target_mbps=target, kept=collector)
    if not stream.supports(config.speed):
        return None
    index = join.PolygonIndex(villages.geometry.values, priority=code_rank)
    return stream.stream_speed_tests(config.speed, index, n_villages=len(villages),
                                     target_mbps=target, buffer_mb=run.buffer_mb, kept=collector)


def _dropped_after(loaded: Loaded, found: list[tuple[str, np.ndarray, str]]
                   ) -> tuple[pd.DataFrame, InputRecord]:
    """The findings and record of a measurement input with rows dropped after loading; each
    of ``found`` is (rule key of :data:`ruralcov.checks.RULES`, mask over the loaded rows,
    what a row is: ``speed test`` or ``tile``)."""
    rows = loaded.frame["row"].to_numpy()
    rec = loaded.record
    issues = concat_issues([loaded.issues, *(
        checks.rule_issues(key, rows[mask], layer=rec.layer, what_test=what)
        for key, mask, what in found)])
    counts = {checks.RULE[key].reason: int(mask.sum()) for key, mask, _ in found if mask.any()}
    record = InputRecord(
        layer=rec.layer, path=rec.path, sha256=rec.sha256, rows_read=rec.rows_read,
        rows_used=rec.rows_used - sum(counts.values()), dropped={**rec.dropped, **counts},
    )
    return issues, record


def _speed_tests_loaded(
    config: Config, villages: gpd.GeoDataFrame, code_rank: np.ndarray, target: np.ndarray,
    collector: CellCollector | None,
) -> Measurement:
    """The speed tests read whole by the loader (formats the stream does not read)."""
    speed = config.speed
    tests = load_speed_tests(speed)
    t = tests.frame
    village = join.assign_points(t.geometry.values, villages.geometry.values, priority=code_rank)
    has_device = t.attrs.get("has_device")
    device = t["device_id"].to_numpy() if has_device else None
    sampled = np.zeros(len(t), dtype=bool)
    if speed.time_column and has_device:
        codes, _ = pd.factorize(pd.Series(device, dtype=object), use_na_sentinel=True)
        sampled = ~sampling.device_day_keep(village, codes, codes >= 0, t["day"].to_numpy(),
                                            t["day_ok"].to_numpy(), t["skey"].to_numpy())
    issues, record = _dropped_after(tests, [("outside", village < 0, "speed test"),
                                            ("sampled", sampled, "speed test")])
    keep = ~sampled
    if collector is not None:
        _collect(collector, t, village, device)
    stats = classify.speed_statistics(
        village[keep],
        t["download_mbps"].to_numpy()[keep],
        n_villages=len(villages),
        target_mbps=target,
        upload=t["upload_mbps"].to_numpy()[keep],
        latency=t["latency_ms"].to_numpy()[keep],
        device=device[keep] if device is not None else None,
        statistic=speed.statistic or "median",
    )
    return Measurement(stats=stats, issues=issues, records=(record,))


def _collect(collector: CellCollector, tests: gpd.GeoDataFrame, village: np.ndarray,
             device: np.ndarray | None) -> None:
    """Hand the loaded tests inside the villages to the cells (as the stream does)."""
    inside = village >= 0
    geoms = tests.geometry.values[inside]
    values = {"row": tests["row"].to_numpy()[inside],
              "down": tests["download_mbps"].to_numpy()[inside]}
    if device is not None:
        keys, ok = stream.device_keys(pa.array(np.asarray(device[inside], dtype=object),
                                                from_pandas=True))
        values.update(dev=keys, dev_ok=ok)
    collector.add(village[inside], shapely.get_x(geoms), shapely.get_y(geoms), values)


def _ookla_tiles(config: Config, villages: gpd.GeoDataFrame, code_rank: np.ndarray,
                 metric: Any) -> Measurement:
    """Per-village statistics from Ookla open-data tiles (:mod:`ruralcov.ookla`); pooled
    periods are one source, each file recorded and its findings kept under its own layer."""
    from ruralcov import ookla

    speed = config.speed
    assert speed is not None
    files = ookla.load_tile_files(speed)
    tiles = gpd.GeoDataFrame(pd.concat([f.frame for f in files], ignore_index=True),
                             geometry="geometry", crs="EPSG:4326")
    assignment = ookla.assign_tiles(
        tiles.geometry.values, villages.geometry.values,
        method=speed.assignment or "centroid", priority=code_rank, metric_crs=metric,
    )
    outside = ~np.isin(np.arange(len(tiles)), assignment["tile"].to_numpy())
    ends = np.cumsum([len(f.frame) for f in files])[:-1]
    found = [_dropped_after(f, [("outside", mask, "tile")])
             for f, mask in zip(files, np.split(outside, ends), strict=True)]
    weighting = speed.weighting or "tests"
    stats = ookla.tile_statistics(assignment, tiles, n_villages=len(villages),
                                  weighting=weighting)
    nan = np.full(len(villages), np.nan)
    # Tiles carry means, not tests: the per-test columns stay empty, the means are added.
    for col in ("download_median_mbps", "download_ci_low_mbps", "download_ci_high_mbps",
                "upload_median_mbps", "latency_median_ms", "share_tests_at_target"):
        stats[col] = nan
    stats["speed_statistic"] = "tests_weighted_mean" if weighting == "tests" else "tile_mean"
    return Measurement(stats=stats, issues=concat_issues([i for i, _ in found]),
                       records=tuple(r for _, r in found))
