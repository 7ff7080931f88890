"""The measurement step of a run: per-village speed statistics from the configured source.

Per-test records go through the streaming engine (:mod:`ruralcov.stream`), the Dask engine
(:mod:`ruralcov.distributed`) or, for formats the stream does not read, the whole-file loader
with :func:`ruralcov.classify.speed_statistics`; Ookla tiles through :mod:`ruralcov.ookla`.
Every path returns the same columns, records its input (rows read = used + dropped) and its
findings.
"""

from __future__ import annotations

from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from ruralcov import classify, join, sampling
from ruralcov.config import Config
from ruralcov.loaders import SAMPLED_OUT, InputRecord, load_speed_tests
from ruralcov.validate import concat_issues, row_issues

__all__ = ["speed_statistics"]


def speed_statistics(
    config: Config, villages: gpd.GeoDataFrame, code_rank: np.ndarray, target: np.ndarray,
    metric: Any, issues: list[pd.DataFrame], records: list[InputRecord],
) -> pd.DataFrame:
    """One row per village: the statistics of :func:`ruralcov.classify.speed_statistics`
    (plus the tile columns for Ookla tiles); empty ones without a measurement source.
    Appends the source's findings to ``issues`` and its input record to ``records``."""
    speed = config.speed
    if speed is not None and speed.kind == "ookla_tiles":
        return _ookla_tiles(config, villages, code_rank, metric, issues, records)
    if speed is None:
        return classify.speed_statistics(
            np.empty(0, dtype=np.intp), np.empty(0), n_villages=len(villages), target_mbps=target
        )
    streamed = _speed_tests(config, villages, code_rank, target)
    if streamed is None:  # a format the stream does not read: the whole file through the loader
        return _speed_tests_loaded(config, villages, code_rank, target, issues, records)
    issues.append(streamed.issues)
    records.append(streamed.record)
    return streamed.stats


def _speed_tests(
    config: Config, villages: gpd.GeoDataFrame, code_rank: np.ndarray, target: np.ndarray
) -> Any:
    """Per-village speed statistics by the configured engine; None when the stream cannot
    read the input (the caller then loads the whole file)."""
    from ruralcov import stream

    run = config.run
    if run.engine == "dask":
        from ruralcov.distributed import dask_speed_tests

        return dask_speed_tests(config, villages.geometry.values, priority=code_rank,
                                target_mbps=target)
    if not stream.supports(config.speed):
        return None
    index = join.PolygonIndex(villages.geometry.values, priority=code_rank)
    return stream.stream_speed_tests(config.speed, index, n_villages=len(villages),
                                     target_mbps=target, buffer_mb=run.buffer_mb)


def _drop_rows(
    loaded: Any, drops: list[tuple[np.ndarray, str, str, str]], issues: list[pd.DataFrame],
    records: list[InputRecord],
) -> None:
    """Record rows of a measurement input dropped after loading (issues and counts); each drop
    is (mask over the loaded rows, reason, message, severity)."""
    rows = loaded.frame["row"].to_numpy()
    found = [row_issues(mask, layer="speed", reason=reason, dropped=True, rows=rows,
                        message=message, severity=severity)
             for mask, reason, message, severity in drops]
    issues.append(concat_issues([loaded.issues, *found]))
    rec = loaded.record
    counts = {reason: int(mask.sum()) for mask, reason, _, _ in drops if mask.any()}
    records.append(InputRecord(
        layer="speed", path=rec.path, sha256=rec.sha256, rows_read=rec.rows_read,
        rows_used=rec.rows_used - sum(counts.values()), dropped={**rec.dropped, **counts},
    ))


def _outside(mask: np.ndarray, what: str) -> tuple[np.ndarray, str, str, str]:
    return mask, "outside_villages", f"{what} lies outside every village polygon", "warning"


def _speed_tests_loaded(
    config: Config, villages: gpd.GeoDataFrame, code_rank: np.ndarray, target: np.ndarray,
    issues: list[pd.DataFrame], records: list[InputRecord],
) -> pd.DataFrame:
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
    _drop_rows(tests, [_outside(village < 0, "speed test"),
                       (sampled, "sampled_out", SAMPLED_OUT, "info")], issues, records)
    keep = ~sampled
    return classify.speed_statistics(
        village[keep],
        t["download_mbps"].to_numpy()[keep],
        n_villages=len(villages),
        target_mbps=target,
        upload=t["upload_mbps"].to_numpy()[keep],
        latency=t["latency_ms"].to_numpy()[keep],
        device=device[keep] if device is not None else None,
        statistic=speed.statistic or "median",
    )


def _ookla_tiles(
    config: Config, villages: gpd.GeoDataFrame, code_rank: np.ndarray, metric: Any,
    issues: list[pd.DataFrame], records: list[InputRecord],
) -> pd.DataFrame:
    """Per-village statistics from Ookla open-data tiles (:mod:`ruralcov.ookla`)."""
    from ruralcov import ookla

    speed = config.speed
    assert speed is not None
    tiles = ookla.load_tiles(speed)
    assignment = ookla.assign_tiles(
        tiles.frame.geometry.values, villages.geometry.values,
        method=speed.assignment or "centroid", priority=code_rank, metric_crs=metric,
    )
    outside = ~np.isin(np.arange(len(tiles.frame)), assignment["tile"].to_numpy())
    _drop_rows(tiles, [_outside(outside, "tile")], issues, records)
    stats = ookla.tile_statistics(assignment, tiles.frame, n_villages=len(villages))
    nan = np.full(len(villages), np.nan)
    # Tiles carry means, not tests: the per-test columns stay empty, the means are added.
    for col in ("download_median_mbps", "download_ci_low_mbps", "download_ci_high_mbps",
                "upload_median_mbps", "latency_median_ms", "share_tests_at_target"):
        stats[col] = nan
    stats["speed_statistic"] = "tests_weighted_mean"
    return stats
