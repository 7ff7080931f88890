"""``analyse``: the one function that wires reading, validation, joins, classification and
aggregation together into a :class:`CoverageResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from ruralcov.config import Config


@dataclass(frozen=True)
class InputRecord:
    """What was read from one input file, for the manifest: rows read = used + dropped."""

    layer: str  # "villages", "boundaries", "fibre[0]", "speed", "names.county", ...
    path: Path
    sha256: str
    rows_read: int
    rows_used: int
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> rows


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
    #: Operational and non-operational fibre assets used in the joins (for maps).
    fibre_points: gpd.GeoDataFrame
    fibre_routes: gpd.GeoDataFrame
    #: The metric CRS (WKT or EPSG string) distances were computed in.
    metric_crs: str
def analyse(*a, **k): raise NotImplementedError
