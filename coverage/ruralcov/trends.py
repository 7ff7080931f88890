"""Quarterly (or any periodic) runs: per-area time series of the fibre and speed shares.

A measurement source with ``periods = {"2020Q1" = "q1.parquet", "2020Q2" = "q2.parquet"}``
is analysed once per period. The latest period (labels sort as text in time order) is the
run's headline: every table, map and number of the run folder is that period's. The other
periods are measured on the headline's villages and fibre evidence with only the measurement
file swapped, and classified exactly as the headline is (same targets, capability records,
basis and corrections). Fibre comes from the fibre inputs, which have no period: a village's
fibre is the same in every period (the villages are read and the fibre joined once), and only
the speed figures move.

What this module adds to a run: ``tables/trend_<level>.csv`` (one row per area and period),
``speed_trend`` per village and ``speed_share_trend`` per area (texts for the map popups),
and one PNG chart per county for the report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ruralcov import aggregate
from ruralcov.config import Config
from ruralcov.loaders import InputRecord
from ruralcov.schema import present_levels
from ruralcov.validate import concat_issues

__all__ = [
    "TREND_COLUMNS",
    "PeriodRuns",
    "area_trend_text",
    "period_config",
    "with_period_column",
    "run_periods",
    "trend_table",
    "village_trend",
    "write_trend_charts",
]

#: Columns of ``tables/trend_<level>.csv``, in order.
TREND_COLUMNS: tuple[str, ...] = (
    "level",
    "code",
    "name",
    "period",
    "villages",
    "fibre_villages",
    "fibre_share",
    "fibre_gap_villages",
    "speed_meets",
    "speed_below",
    "speed_insufficient",
    "speed_share",
    "speed_share_change",
    "tests",
)


@dataclasses.dataclass(frozen=True)
class PeriodRuns:
    """The village frames of every period (label → frame, oldest first) and what the
    earlier periods' inputs add to the run's records and issues."""

    villages: dict[str, pd.DataFrame]
    records: tuple[InputRecord, ...]
    issues: pd.DataFrame


def period_config(config: Config, label: str) -> Config:
    """The configuration of one period's re-run.

    Parameters
    ----------
    config
        A configuration whose measurement source has ``periods``.
    label
        One of its period labels.

    Returns
    -------
    Config
        ``config`` with its measurement source reading only that period's file (or, with a
        period column, only that period's rows).

    Raises
    ------
    KeyError
        When the configuration has no such period.
    """
    speed = config.speed
    if speed is None or not speed.periods or label not in speed.periods:
        raise KeyError(f"no period {label!r} in the configuration")
    one = dataclasses.replace(speed, path=speed.periods[label], periods=None,
                              period_value=label if speed.period else None)
    return dataclasses.replace(config, speed=one)


def with_period_column(config: Config) -> Config:
    """The periods of a run over a period column (``[speed] period``), made explicit.

    Parameters
    ----------
    config
        The run's configuration; only its ``[speed]`` section is read and replaced.

    Returns
    -------
    Config
        With a period column: its periods are the column's values (:mod:`ruralcov.periods`),
        each reading the same file, and the headline reads the latest. Otherwise ``config``
        unchanged.
    """
    speed = config.speed
    if speed is None or speed.period is None or speed.periods or speed.period_value:
        return config
    from ruralcov.periods import period_labels

    labels = period_labels(speed)
    one = dataclasses.replace(speed, periods={label: speed.path for label in labels},
                              period_value=labels[-1])
    return dataclasses.replace(config, speed=one)


#: One period's analysis for :func:`run_periods`: its classified villages, input records, issues.
PeriodAnalysis = Callable[[Config], tuple[pd.DataFrame, Sequence[InputRecord], pd.DataFrame]]


def run_periods(config: Config, latest: pd.DataFrame, *, analyse: PeriodAnalysis) -> PeriodRuns:
    """Analyse every period but the latest, which the headline run has done.

    The earlier periods' measurement inputs are recorded as layer ``speed[<label>]`` and their
    speed findings are kept under that layer; the rest of each period's findings (capability,
    corrections) repeats the headline's and is not recorded twice.

    Parameters
    ----------
    config
        The run's configuration, its measurement source with ``periods``.
    latest
        The headline's (latest period's) village frame.
    analyse
        One period's analysis: given that period's configuration, its classified village
        frame, input records and issues (the pipeline measures the period on the headline's
        villages and fibre evidence); passed in so that this module does not import the
        pipeline that calls it.

    Returns
    -------
    PeriodRuns
        The village frames of every period, oldest first, and the earlier periods' records
        and speed findings.
    """
    speed = config.speed
    assert speed is not None and speed.periods
    labels = sorted(speed.periods)
    frames: dict[str, pd.DataFrame] = {}
    records: list[InputRecord] = []
    issues: list[pd.DataFrame] = []
    for label in labels[:-1]:
        villages, inputs, found_all = analyse(period_config(config, label))
        frames[label] = pd.DataFrame(villages.drop(columns="geometry", errors="ignore"))
        layer = f"speed[{label}]"
        records += [dataclasses.replace(r, layer=layer) for r in inputs if r.layer == "speed"]
        found = found_all[found_all["layer"] == "speed"].copy()
        found["layer"] = layer
        issues.append(found)
    frames[labels[-1]] = pd.DataFrame(latest.drop(columns="geometry", errors="ignore"))
    return PeriodRuns(
        villages=frames,
        records=tuple(records),
        issues=concat_issues(issues),
    )


def trend_table(
    frames: Mapping[str, pd.DataFrame],
    *,
    level: str,
    fibre_target: float,
    names: pd.Series | None = None,
) -> pd.DataFrame:
    """The time series of every area of one level, each period summarised as the headline is.

    Parameters
    ----------
    frames
        The village frame of each period (label -> frame), as in :class:`PeriodRuns`.
    level, fibre_target, names
        As for :func:`ruralcov.aggregate.summarise`.

    Returns
    -------
    pandas.DataFrame
        One row per area and period (:data:`TREND_COLUMNS`), areas in code order and periods
        oldest first. Shares are those of :func:`ruralcov.aggregate.summarise`;
        ``speed_share_change`` is the change from the area's previous period (empty for the
        first) and ``tests`` the tests of its administrative villages.

    Examples
    --------
    >>> def period(classes):
    ...     return pd.DataFrame({"kind": "village", "county_code": "140105", "fibre": True,
    ...                          "has_geometry": True, "speed_class": classes, "tests": [5, 6]})
    >>> table = trend_table({"2020Q1": period(["below", "meets"]),
    ...                      "2020Q2": period(["meets", "meets"])}, level="county",
    ...                     fibre_target=0.98)
    >>> table[["period", "speed_share", "speed_share_change", "tests"]].values.tolist()
    [['2020Q1', 0.5, nan, 11], ['2020Q2', 1.0, 0.5, 11]]
    """
    parts = []
    for label, frame in frames.items():
        summary = aggregate.summarise(frame, level=level, fibre_target=fibre_target, names=names)
        is_village = frame["kind"] == "village"
        tests = (
            frame.loc[is_village & frame[f"{level}_code"].notna()]
            .groupby(f"{level}_code")["tests"]
            .sum()
        )
        summary["tests"] = summary["code"].map(tests).fillna(0).astype(np.int64)
        summary["period"] = label
        parts.append(summary)
    out = pd.concat(parts, ignore_index=True)
    out = out.sort_values(["code", "period"], kind="stable").reset_index(drop=True)
    out["speed_share_change"] = out.groupby("code")["speed_share"].diff()
    return out.loc[:, list(TREND_COLUMNS)]


def trend_tables(
    frames: Mapping[str, pd.DataFrame], *, fibre_target: float, names: Mapping[str, pd.Series]
) -> dict[str, pd.DataFrame]:
    """:func:`trend_table` for every level present in the latest period's villages.

    Parameters
    ----------
    frames
        The village frame of each period (label -> frame).
    fibre_target
        The fibre target share.
    names
        Area names by level, then by code.

    Returns
    -------
    dict of pandas.DataFrame
        The trend table of each level, largest level first.
    """
    latest = frames[max(frames)]
    return {
        level: trend_table(frames, level=level, fibre_target=fibre_target, names=names.get(level))
        for level in present_levels(latest)
    }


def _pct(x: Any) -> str:
    return "–" if x is None or pd.isna(x) else f"{100 * x:.1f} %"


def village_trend(frames: Mapping[str, pd.DataFrame]) -> pd.Series:
    """Each village's speed class in each period, the text of the map popups.

    Parameters
    ----------
    frames
        The village frame of each period, oldest first; all follow the register's rows.

    Returns
    -------
    pandas.Series
        ``speed_trend``, aligned to the latest frame's rows: ``"2020Q1 below → 2020Q2 meets"``.
    """
    labels = list(frames)
    classes = [frames[k]["speed_class"].astype(str).to_numpy() for k in labels]
    text = [
        " → ".join(f"{k} {c[i]}" for k, c in zip(labels, classes, strict=True))
        for i in range(len(classes[0]))
    ]
    return pd.Series(text, index=frames[labels[-1]].index, name="speed_trend", dtype=object)


def area_trend_text(trend: pd.DataFrame) -> pd.Series:
    """Each area's speed share in each period, the text of the map popups.

    Parameters
    ----------
    trend
        A trend table (:func:`trend_table`).

    Returns
    -------
    pandas.Series
        ``speed_share_trend`` by area code: ``"2020Q1 40.0 % → 2020Q2 60.0 %"``.
    """
    return (
        trend.groupby("code", sort=True)
        .apply(
            lambda g: " → ".join(
                f"{p} {_pct(s)}" for p, s in zip(g["period"], g["speed_share"], strict=True)
            ),
            include_groups=False,
        )
        .rename("speed_share_trend")
    )


def write_trend_charts(
    trend: pd.DataFrame, folder: Path | str, *, fibre_target: float | None = None
) -> list[tuple[str, str]]:
    """One PNG per area of a trend table: fibre and speed share by period.

    Only codes and English labels are drawn (area names may need glyphs the installed fonts
    lack); the caption, shown in HTML, carries the name.

    Parameters
    ----------
    trend
        A trend table (:func:`trend_table`), of counties in the report.
    folder
        Where the PNG files are written (created if missing).
    fibre_target
        Drawn as a dashed line when given.

    Returns
    -------
    list of tuple
        ``(file name, caption)`` pairs in code order.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    periods = sorted(set(trend["period"]))
    x = np.arange(len(periods))
    # Axes, ticks and legend are drawn once; per county only the two lines and the title are
    # drawn over a copy of that background (blitting), so a province's charts take little time.
    fig = Figure(figsize=(4.0, 2.6), dpi=80)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    nan = np.full(len(periods), np.nan)
    (fibre_line,) = ax.plot(x, nan, marker="o", color="#1b7837", label="fibre share", animated=True)
    (speed_line,) = ax.plot(x, nan, marker="s", color="#2166ac", label="speed share", animated=True)
    if fibre_target is not None:
        ax.axhline(100 * fibre_target, color="#b2182b", lw=0.8, ls="--", label="fibre target")
    ax.set_xticks(x, periods)
    ax.set_xlim(-0.3, len(periods) - 0.7)
    ax.set_ylim(0, 105)
    ax.set_ylabel("% of villages")
    ax.legend(fontsize=7, loc="lower right")
    title = ax.set_title("County 000000", fontsize=10)  # room for the title, then blank
    fig.tight_layout()
    title.set_animated(True)
    canvas.draw()
    background = canvas.copy_from_bbox(fig.bbox)
    out = []
    for code, g in trend.groupby("code", sort=True):
        canvas.restore_region(background)
        pos = np.searchsorted(periods, g["period"].to_numpy())
        for line, col in ((fibre_line, "fibre_share"), (speed_line, "speed_share")):
            y = nan.copy()
            y[pos] = 100 * g[col].to_numpy(dtype=float)
            line.set_ydata(y)
            ax.draw_artist(line)
        title.set_text(f"County {code}")
        ax.draw_artist(title)
        name = f"trend_{code}.png"
        Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB").save(folder / name)
        name_text = g["name"].iloc[0]
        caption = f"{code} {name_text}" if isinstance(name_text, str) else str(code)
        out.append((name, f"{caption}: fibre and speed share by period"))
    return out
