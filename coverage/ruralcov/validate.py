"""Findings about input rows, kept as tables so that nothing is lost silently.

Readers and engine steps return an issues frame (:data:`ISSUE_FIELDS`) alongside their data;
the pipeline concatenates them into ``issues.csv`` and derives the manifest's per-input counts
(rows read = rows used + rows dropped by reason). Frames rather than objects, because a speed
test file can produce hundreds of thousands of findings.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import shapely

from ruralcov.crs import gcj02_to_wgs84
from ruralcov.errors import CRSError
from ruralcov.schema import ISSUE_COLUMNS

SEVERITIES = ("error", "warning", "info")

#: ``row`` is the 1-based data row in the source file (empty for file-level findings);
#: ``dropped`` is True when the row was left out of the analysis because of the finding.
ISSUE_FIELDS: tuple[str, ...] = (*ISSUE_COLUMNS, "dropped")


def no_issues() -> pd.DataFrame:
    """An empty issues frame with the right columns and dtypes.

    Returns
    -------
    pandas.DataFrame
        No rows; the columns of :data:`ISSUE_FIELDS`.
    """
    return _typed(pd.DataFrame({c: [] for c in ISSUE_FIELDS}))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.loc[:, list(ISSUE_FIELDS)]
    frame["row"] = frame["row"].astype("Int64")
    frame["dropped"] = frame["dropped"].astype(bool)
    for col in ("severity", "layer", "code", "reason", "message"):
        frame[col] = frame[col].astype(object)
    return frame.reset_index(drop=True)


def issue(
    *,
    layer: str,
    reason: str,
    message: str,
    severity: str = "warning",
    row: int | None = None,
    code: str | None = None,
    dropped: bool = False,
) -> pd.DataFrame:
    """A single finding as a one-row issues frame.

    Parameters
    ----------
    layer, reason, message, severity
        What the finding is about and says.
    row
        The 1-based source row (None for a finding about a whole file).
    code
        The village (or asset) code the row carries.
    dropped
        Whether the row is left out of the analysis.

    Returns
    -------
    pandas.DataFrame
        One row, :data:`ISSUE_FIELDS`.

    Examples
    --------
    >>> issue(layer="speed", reason="column_absent", message="no device column")[
    ...     ["severity", "layer", "reason", "dropped"]].to_dict("records")
    [{'severity': 'warning', 'layer': 'speed', 'reason': 'column_absent', 'dropped': False}]
    """
    return _typed(
        pd.DataFrame(
            {
                "severity": [severity],
                "layer": [layer],
                "row": [row],
                "code": [code],
                "reason": [reason],
                "message": [message],
                "dropped": [dropped],
            }
        )
    )


def row_issues(
    mask: pd.Series | np.ndarray,
    *,
    layer: str,
    reason: str,
    message: str | pd.Series,
    severity: str = "warning",
    codes: pd.Series | None = None,
    rows: pd.Series | np.ndarray | None = None,
    dropped: bool = False,
) -> pd.DataFrame:
    """One finding per True entry of ``mask``.

    Parameters
    ----------
    mask
        Which entries make a finding (missing values count as False).
    layer, reason, severity, dropped
        As for :func:`issue`.
    message
        The message, or a Series aligned with ``mask`` for per-row wording.
    codes
        Each entry's code, aligned with ``mask``.
    rows
        Each entry's 1-based source row; by default the entry's position + 1.

    Returns
    -------
    pandas.DataFrame
        The findings in entry order, :data:`ISSUE_FIELDS`.
    """
    hit = np.asarray(pd.Series(mask).fillna(False).astype(bool))
    n = int(hit.sum())
    if n == 0:
        return no_issues()
    source_rows = np.arange(1, len(hit) + 1) if rows is None else np.asarray(rows)
    msg = np.asarray(message)[hit] if isinstance(message, pd.Series) else [message] * n
    code = [None] * n if codes is None else np.asarray(codes.astype(object))[hit]
    return _typed(
        pd.DataFrame(
            {
                "severity": severity,
                "layer": layer,
                "row": source_rows[hit],
                "code": code,
                "reason": reason,
                "message": msg,
                "dropped": dropped,
            }
        )
    )


def concat_issues(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """All findings in one frame, in the order given.

    Parameters
    ----------
    frames
        Issues frames.

    Returns
    -------
    pandas.DataFrame
        Their rows, :data:`ISSUE_FIELDS`.
    """
    frames = [f for f in frames if len(f)]
    return _typed(pd.concat(frames, ignore_index=True)) if frames else no_issues()


def dropped_counts(issues: pd.DataFrame, layer: str) -> dict[str, int]:
    """Rows dropped per reason for one layer, for the manifest's counts.

    Parameters
    ----------
    issues
        The findings.
    layer
        The input.

    Returns
    -------
    dict
        Reason -> rows; a row is counted once, under its first reason, so that rows read =
        rows used + the sum.
    """
    hits = issues[(issues["layer"] == layer) & issues["dropped"]]
    hits = hits.drop_duplicates(subset="row", keep="first")
    return {str(k): int(v) for k, v in hits["reason"].value_counts(sort=False).items()}


# --- positions against the villages --------------------------------------------------------


def _in_extent(x: np.ndarray, y: np.ndarray, bounds: tuple[float, ...], pad: float) -> np.ndarray:
    x0, y0, x1, y1 = bounds
    return (x >= x0 - pad) & (x <= x1 + pad) & (y >= y0 - pad) & (y <= y1 + pad)


def axes_swapped(x: np.ndarray, y: np.ndarray, bounds: tuple[float, ...]) -> bool:
    """True when most points lie outside the villages' extent but inside it once longitude
    and latitude are exchanged: the lon and lat columns are the wrong way round.

    Coordinates that are valid either way (69.6, 18.9 is a place in the sea off Somalia, 18.9,
    69.6 one in Norway) can only be told apart this way, by comparing with the villages.

    Parameters
    ----------
    x, y
        The points' longitude and latitude as given.
    bounds
        The villages' extent (west, south, east, north).

    Returns
    -------
    bool
        Whether the axes look exchanged (never with fewer than two points).

    Examples
    --------
    >>> axes_swapped(np.array([69.61, 69.62]), np.array([18.91, 18.93]), (18.9, 69.6, 19.0, 69.7))
    True
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return False
    x, y = x[ok], y[ok]
    pad = 0.1 * max(bounds[2] - bounds[0], bounds[3] - bounds[1], 0.05)
    as_given = _in_extent(x, y, bounds, pad).mean()
    exchanged = _in_extent(y, x, bounds, pad).mean()
    return bool(as_given < 0.5 and exchanged >= 0.8)


def gcj02_suspected(
    x: np.ndarray, y: np.ndarray, polygons: np.ndarray
) -> tuple[bool, float, float]:
    """Whether points declared WGS 84 look like GCJ-02 (Mars) coordinates.

    The GCJ-02 offset is 100–700 m inside China. When clearly more of the points fall inside
    a village once converted from GCJ-02 than as given, they were most probably copied from an
    AMap/Tencent map. Villages that tile the land leave nothing to compare (a shifted point is
    still inside some village), so this only detects what it can: it never raises, it warns.

    Parameters
    ----------
    x, y
        The points' longitude and latitude as given.
    polygons
        The village polygons (EPSG:4326).

    Returns
    -------
    suspect, before, after
        The verdict and the shares of points inside a village as given and after conversion
        (NaN when there is nothing to compare).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    polys = np.asarray([p for p in polygons if p is not None and not p.is_empty], dtype=object)
    if ok.sum() < 5 or len(polys) == 0:
        return False, float("nan"), float("nan")
    x, y = x[ok], y[ok]
    tree = shapely.STRtree(polys)

    def share(px: np.ndarray, py: np.ndarray) -> float:
        hit = tree.query(shapely.points(px, py), predicate="intersects")[0]
        return len(np.unique(hit)) / len(px)

    cx, cy = gcj02_to_wgs84(x, y)
    if np.allclose(cx, x) and np.allclose(cy, y):
        return False, float("nan"), float("nan")  # outside China: GCJ-02 is WGS 84
    before, after = share(x, y), share(np.asarray(cx), np.asarray(cy))
    return bool(after >= 0.8 and after - before >= 0.3), before, after


def check_positions(
    x: np.ndarray,
    y: np.ndarray,
    *,
    villages: np.ndarray,
    layer: str,
    path: object,
    crs: object = None,
) -> pd.DataFrame:
    """Checks of a point layer against the village polygons (EPSG:4326).

    Parameters
    ----------
    x, y
        The points' longitude and latitude.
    villages
        The village polygons.
    layer, path
        The input, named by the findings.
    crs
        The ``crs`` setting (points declared as GCJ-02 or BD-09 are not suspected of being
        GCJ-02).

    Returns
    -------
    pandas.DataFrame
        A ``crs_suspect_gcj02`` warning when the points look like GCJ-02 declared as WGS 84;
        no issues otherwise.

    Raises
    ------
    CRSError
        When longitude and latitude look swapped (:func:`axes_swapped`).
    """
    polys = np.asarray([p for p in villages if p is not None and not p.is_empty], dtype=object)
    if len(polys) == 0:
        return no_issues()
    bounds = tuple(shapely.total_bounds(polys))
    if axes_swapped(x, y, bounds):
        raise CRSError(
            f"{layer}: longitude and latitude look swapped in {path}: the points lie outside "
            f"the villages' extent ({bounds[0]:.2f}..{bounds[2]:.2f}E, "
            f"{bounds[1]:.2f}..{bounds[3]:.2f}N) but inside it with the two exchanged; "
            f"exchange the lon and lat settings in the [{layer.split('[', 1)[0]}] section"
        )
    if isinstance(crs, str) and crs.lower() in ("gcj02", "bd09"):
        return no_issues()
    suspect, before, after = gcj02_suspected(x, y, polys)
    if not suspect:
        return no_issues()
    return issue(
        layer=layer,
        reason="crs_suspect_gcj02",
        severity="warning",
        message=f"{path} is read as WGS 84, but only {before:.0%} of its points lie in a "
        f"village as given against {after:.0%} when read as GCJ-02 (AMap/Tencent); if it was "
        f'copied from such a map set crs = "gcj02" in the [{layer.split("[", 1)[0]}] section',
    )
