"""Declared access capability and the five-way speed class.

China's 12 Mbps rural target is an access-capability standard (the village committee, school
and clinic must be reachable at 12 Mbps or more), while measured speeds mostly show what
customers chose to buy. Capability records (``kind = "capability"``: village code →
advertised or provisioned download/upload and technology, one row per provider) are therefore
checked against measurements, not replaced by them.

A village's capability is the **best across providers**: the row with the highest download
(ties: higher upload, then provider name in text order). ``capability_class`` is ``meets``
(download at or above the village's target), ``below``, or ``none`` (no record). With the
measured class (``meets`` / ``below`` / ``insufficient_data`` from tests or tiles; all
``insufficient_data`` without a measurement source), every village gets exactly one of:

=====================  ==========================================================
``meets``              capability meets and the measurement meets
``capability_only``    capability meets; the measurement is below or too thin
``measured_only``      the measurement meets; capability below or not recorded
``fails``              neither meets, and at least one of them says below
``insufficient_data``  no capability record and too few measurements
=====================  ==========================================================

The headline speed share counts, by ``[run] speed_basis``: ``capability`` (default: the
target is a capability standard) → ``meets`` + ``capability_only``; ``measured`` → ``meets``
+ ``measured_only``; ``either`` → all three.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely
from numpy.typing import ArrayLike, NDArray

from ruralcov import io, join, presets, units
from ruralcov.config import SpeedConfig
from ruralcov.errors import require_columns
from ruralcov.loaders import Loaded, input_record, preset_columns, read_issues_mask
from ruralcov.schema import read_codes
from ruralcov.validate import concat_issues, row_issues

__all__ = [
    "BASIS_CLASSES",
    "FIVE_WAY",
    "FIVE_WAY_TEXT",
    "counts_for_basis",
    "discrepancies",
    "five_way_class",
    "is_five_way",
    "load_capability",
    "village_capability",
]

FIVE_WAY: tuple[str, ...] = (
    "meets",
    "capability_only",
    "measured_only",
    "fails",
    "insufficient_data",
)
#: What each five-way class means, in the words of the report and the map legends.
FIVE_WAY_TEXT: dict[str, str] = {
    "meets": "capability and measurement both meet the target",
    "capability_only": "capability meets, measurement below or too thin",
    "measured_only": "measurement meets, capability below or not recorded",
    "fails": "neither meets (at least one says below)",
    "insufficient_data": "no capability record and too few measurements",
}
#: The five-way classes each ``speed_basis`` counts towards the speed share.
BASIS_CLASSES: dict[str, tuple[str, ...]] = {
    "capability": ("meets", "capability_only"),
    "measured": ("meets", "measured_only"),
    "either": ("meets", "capability_only", "measured_only"),
}
DEFAULT_BASIS = "capability"


def load_capability(source: SpeedConfig, index: int, register_codes: pd.Series, *,
                    polygons: ArrayLike | None = None) -> Loaded:
    """Read one capability source; unusable rows are dropped with a reason.

    A row names its village by code, or (``code = ""``, as the ``fcc_bdc`` preset has it) by
    its point: ``lon``/``lat`` placed in the village polygon that covers it, a point on a
    shared edge going to the lowest code (:func:`ruralcov.join.assign_points`, the rule of
    the speed tests). Then the technology rules (:func:`_technology`) and the download rules.

    Parameters
    ----------
    source
        A ``[[speed]]`` block of kind ``capability``.
    index
        Its position among the capability sources: the layer is ``capability[<index>]``.
    register_codes
        The village codes of the register; a row of another code is dropped.
    polygons
        The villages' polygons (EPSG:4326), aligned with ``register_codes``: needed when rows
        are placed by their point.

    Returns
    -------
    Loaded
        Rows with ``village_code``, ``download_mbps``, ``upload_mbps`` (Mbit/s),
        ``technology``, ``provider``, the issues of the dropped rows and the input record
        (rows of a technology not counted are in its ``dropped`` only, as
        ``technology_not_counted``).

    Raises
    ------
    SchemaError
        When the code, coordinate, download or technology column is missing, or a
        spreadsheet changed the codes.
    """
    layer = f"capability[{index}]"
    source = preset_columns(source, name=layer)
    if source.code == "":
        frame, code, placing = _placed(source, layer, register_codes, polygons)
    else:
        frame, code, placing = _coded(source, layer, register_codes)
    require_columns((source.download,), frame.columns, where=f"{layer}: {source.path}",
                    fix='Set download = "..." in [[speed]]')
    download = units.to_mbps(
        pd.to_numeric(frame[source.download], errors="coerce").astype(float),
        source.download_unit,
    )
    placed = ~placing.unusable
    technology, unknown_tech, not_counted = _technology(frame, source, layer, placed)
    rated = placed & ~unknown_tech & ~not_counted
    bad = rated & download.isna()
    negative = rated & (download < 0)
    # The unit rules of measured tests (a table in kbit/s read as Mbit/s would make every
    # village capable); rows above 10 Gbit/s are not dropped here, only counted.
    units.check_plausible(
        units.SpeedTally.of(download.to_numpy(), (rated & ~bad & ~negative).to_numpy()),
        column=source.download, path=source.path, unit=source.download_unit, layer=layer)
    issues = concat_issues([
        placing.issues,
        row_issues(unknown_tech, layer=layer, reason="unknown_technology", dropped=True,
                   codes=placing.label, message=_unknown_message(frame, source)),
        row_issues(bad, layer=layer, reason="bad_download", dropped=True, codes=placing.label,
                   message=f"{source.download!r} is missing or not a number"),
        row_issues(negative, layer=layer, reason="negative_speed", dropped=True,
                   codes=placing.label, message=f"{source.download!r} is negative"),
    ])
    rows = _capability_rows(frame, source, index, code, download).assign(technology=technology)
    out = rows[(rated & ~bad & ~negative).to_numpy()].reset_index(drop=True)
    record = input_record(layer, source.path, len(frame), issues, digest=io.content_hash(frame),
                          extra={"technology_not_counted": int(not_counted.sum())})
    return Loaded(frame=out, issues=issues, record=record)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _Placing:
    """How the rows of a capability file found their village: which could not (and why)."""

    unusable: pd.Series  # True for rows without a village
    issues: pd.DataFrame  # their findings
    label: pd.Series  # what a finding names a row by: its village or location code


def _coded(source: SpeedConfig, layer: str, register_codes: pd.Series
           ) -> tuple[pd.DataFrame, pd.Series, _Placing]:
    """The rows of a file naming their village by code."""
    code_col = source.code or "village_code"
    frame = io.read_table(source.path, encoding=source.encoding, name=layer)
    require_columns((code_col,), frame.columns, where=f"{layer}: {source.path}",
                    fix='Set code = "..." in [[speed]], or code = "" to place rows by lon/lat')
    code = read_codes(frame[code_col], source=f"{layer} ({source.path.name})", column=code_col)
    no_code = code.isna() | (code == "")
    unknown = ~no_code & ~code.isin(set(register_codes.astype(str)))
    issues = concat_issues([
        row_issues(no_code, layer=layer, reason="missing_code", dropped=True,
                   message="capability row has no village code"),
        row_issues(unknown, layer=layer, reason="unknown_code", dropped=True, codes=code,
                   message="village code is not in the register"),
    ])
    return frame, code, _Placing(no_code | unknown, issues, code)


def _placed(source: SpeedConfig, layer: str, register_codes: pd.Series,
            polygons: ArrayLike | None) -> tuple[pd.DataFrame, pd.Series, _Placing]:
    """The rows of a file giving a point each, placed in the village polygon covering it."""
    if polygons is None:
        raise ValueError("capability rows placed by lon/lat need the village polygons")
    frame, read_issues = io.read_layer(source.path, layer=source.layer, crs=source.crs,
                                       encoding=source.encoding, lon=source.lon,
                                       lat=source.lat, name=layer)
    geoms = frame.geometry.values
    where = join.assign_points(geoms, polygons, priority=join.code_priority(register_codes))
    codes = register_codes.astype(object).to_numpy()
    code = pd.Series(np.where(where >= 0, codes[np.maximum(where, 0)], None), dtype=object)
    located = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    label = (frame[presets.LOCATION_ID].astype(object) if presets.LOCATION_ID in frame.columns
             else pd.Series(None, index=frame.index, dtype=object))
    reported = read_issues_mask(read_issues, len(frame)).to_numpy()
    issues = concat_issues([
        read_issues.assign(dropped=read_issues["row"].notna()),
        row_issues(~located & ~reported, layer=layer, reason="missing_geometry", dropped=True,
                   codes=label, message="capability row has no location"),
        row_issues(located & (where < 0), layer=layer, reason="outside_villages", dropped=True,
                   codes=label, message="capability location lies outside every village polygon"),
    ])
    return pd.DataFrame(frame.drop(columns=frame.geometry.name)), code, _Placing(
        pd.Series(where < 0), issues, label)


def _technology(frame: pd.DataFrame, source: SpeedConfig, layer: str, placed: pd.Series
                ) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Each row's technology (the ``fcc_bdc`` preset's codes as classes, :data:`ruralcov.presets.
    BDC_TECHNOLOGY`), the placed rows whose code is unknown, and those whose technology is not
    among ``technologies`` (left out, counted in the manifest)."""
    name = source.technology or "technology"
    none = pd.Series(False, index=frame.index)
    if name not in frame.columns:
        if source.technologies is not None or source.preset == "fcc_bdc":
            require_columns((name,), frame.columns, where=f"{layer}: {source.path}",
                            fix='Set technology = "..." in [[speed]]')
        return pd.Series(None, index=frame.index, dtype=object), none, none
    values = frame[name].astype(object)
    unknown = none
    if source.preset == "fcc_bdc":
        values = presets.technology_classes(frame[name]).astype(object)
        unknown = placed & values.isna()
    values = values.where(values.notna(), None)
    if source.technologies is None:
        return values, unknown, none
    # compared as text, so that a Parquet column of numbers matches technologies = ["50"]
    counted = values.notna() & values.astype(str).isin(set(source.technologies))
    return values, unknown, placed & ~unknown & ~counted


def _unknown_message(frame: pd.DataFrame, source: SpeedConfig) -> pd.Series | str:
    """The ``unknown_technology`` message of each row, naming its value and the known codes."""
    name = source.technology or "technology"
    if name not in frame.columns:
        return ""
    known = ", ".join(f"{k} {v}" for k, v in presets.BDC_TECHNOLOGY.items())
    shown = frame[name].astype(object).map(repr).where(frame[name].notna(), "empty")
    return (f"{name!r} " + shown + f" is not a technology code of the {source.preset} preset "
            f"({known}); left out")


def _capability_rows(frame: pd.DataFrame, source: SpeedConfig, index: int, code: pd.Series,
                     download: pd.Series) -> pd.DataFrame:
    """Every row of the file in the columns of :func:`load_capability` (none dropped yet)."""

    def optional(col: str | None, default: str) -> pd.Series:
        name = col or default
        if name in frame.columns:
            return frame[name].astype(object)
        return pd.Series(None, index=frame.index, dtype=object)

    upload = units.to_mbps(
        pd.to_numeric(frame[source.upload], errors="coerce").astype(float)
        if source.upload and source.upload in frame.columns
        else pd.Series(np.nan, index=frame.index),
        source.download_unit,
    )
    return pd.DataFrame(
        {
            "village_code": code.astype(object),
            "download_mbps": download,
            "upload_mbps": upload.where(upload >= 0),
            "technology": optional(source.technology, "technology"),
            "provider": optional(source.provider, "provider").fillna(f"source {index}"),
        }
    )


def village_capability(records: pd.DataFrame, codes: pd.Series) -> pd.DataFrame:
    """The best capability record of each village: the highest download (ties: higher upload,
    then provider name in text order).

    Parameters
    ----------
    records
        Capability rows as :func:`load_capability` returns them (all sources together).
    codes
        The village codes of the register.

    Returns
    -------
    pandas.DataFrame
        Aligned with ``codes``: ``capability_download_mbps``, ``capability_upload_mbps``,
        ``capability_technology``, ``capability_provider`` and ``capability_providers``
        (number of providers with a record); empty (0 providers) where a village has none.

    Examples
    --------
    >>> recs = pd.DataFrame({"village_code": ["A", "A"], "download_mbps": [10.0, 50.0],
    ...     "upload_mbps": [1.0, 5.0], "technology": ["DSL", "FTTH"], "provider": ["x", "y"]})
    >>> village_capability(recs, pd.Series(["A", "B"]))["capability_technology"].tolist()
    ['FTTH', None]
    """
    ordered = records.assign(_up=records["upload_mbps"].fillna(-np.inf)).sort_values(
        ["village_code", "download_mbps", "_up", "provider"],
        ascending=[True, False, False, True],
        kind="stable",
    )
    best = ordered.drop_duplicates("village_code").set_index("village_code")
    providers = records.groupby("village_code")["provider"].nunique()
    key = codes.astype(str)
    out = pd.DataFrame(index=codes.index)
    out["capability_download_mbps"] = key.map(best["download_mbps"]).astype(float)
    out["capability_upload_mbps"] = key.map(best["upload_mbps"]).astype(float)
    out["capability_technology"] = key.map(best["technology"]).astype(object)
    out["capability_provider"] = key.map(best["provider"]).astype(object)
    out["capability_providers"] = key.map(providers).fillna(0).astype(np.int64)
    for col in ("capability_technology", "capability_provider"):
        out[col] = out[col].where(out[col].notna(), None)
    return out


def five_way_class(
    measured_class: ArrayLike, capability_mbps: ArrayLike, target_mbps: ArrayLike
) -> tuple[NDArray[np.object_], NDArray[np.object_]]:
    """The five-way class of each village (module docstring) and its capability class.

    Parameters
    ----------
    measured_class
        Per village: ``meets``, ``below`` or ``insufficient_data`` from the measurements.
    capability_mbps
        Per village: the best declared download (NaN: no record).
    target_mbps
        Per village: the download target it is held to.

    Returns
    -------
    tuple of numpy.ndarray
        The five-way class (one of :data:`FIVE_WAY`) and the capability class (``meets``,
        ``below`` or ``none``), object arrays.

    Examples
    --------
    >>> cls, cap = five_way_class(["meets", "below", "meets", "below", "insufficient_data"],
    ...                           [20.0, 20.0, 4.0, np.nan, np.nan], [12.0] * 5)
    >>> cls.tolist()
    ['meets', 'capability_only', 'measured_only', 'fails', 'insufficient_data']
    """
    measured = np.asarray(measured_class, dtype=object)
    cap = np.asarray(capability_mbps, dtype=float)
    has_cap = ~np.isnan(cap)
    cap_meets = has_cap & (cap >= np.asarray(target_mbps, dtype=float))
    m_meets = measured == "meets"
    m_below = measured == "below"
    classes = np.select(
        [cap_meets & m_meets, cap_meets, m_meets, has_cap | m_below],
        ["meets", "capability_only", "measured_only", "fails"],
        default="insufficient_data",
    ).astype(object)
    cap_class = np.where(cap_meets, "meets", np.where(has_cap, "below", "none")).astype(object)
    return classes, cap_class


def is_five_way(villages: pd.DataFrame) -> bool:
    """Whether a village table holds five-way speed classes (a run with capability records).

    Parameters
    ----------
    villages
        A village table, of a result or read from a run folder.

    Returns
    -------
    bool
        True when it has a ``capability_class`` column, or a speed class that only the
        five-way scheme has.
    """
    if "capability_class" in villages.columns:
        return True
    only_five = set(FIVE_WAY) - {"meets", "insufficient_data"}
    return bool(villages["speed_class"].isin(only_five).any())


def counts_for_basis(speed_class: ArrayLike, *, basis: str) -> NDArray[np.bool_]:
    """Which villages count towards the speed share.

    Parameters
    ----------
    speed_class
        Per village: its five-way class.
    basis
        ``[run] speed_basis``: a key of :data:`BASIS_CLASSES`.

    Returns
    -------
    numpy.ndarray
        True where the class is one that ``basis`` counts.

    Examples
    --------
    >>> counts_for_basis(["meets", "capability_only", "measured_only"], basis="measured")
    array([ True, False,  True])
    """
    if basis not in BASIS_CLASSES:
        raise ValueError(f"`basis` was {basis!r} but is expected to be in {list(BASIS_CLASSES)}")
    return np.isin(np.asarray(speed_class, dtype=object), BASIS_CLASSES[basis])


def discrepancies(villages: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Villages where fibre and speed evidence disagree, for review.

    Parameters
    ----------
    villages
        The village table of a run with capability records (``kind``, ``fibre``,
        ``measured_class``, ``capability_class``).

    Returns
    -------
    dict of pandas.DataFrame
        Rows of ``villages`` (administrative villages and communities only):

        - ``fibre_but_slow``: fibre on record, but the measurement says below target;
        - ``fast_without_fibre``: no fibre on record, but the measurement or the declared
          capability meets the target, with ``fast_basis``: ``measured``, ``capability`` or
          ``both``.
    """
    in_scope = villages["kind"].isin(["village", "community"])
    fibre = villages["fibre"].fillna(False).astype(bool)
    measured = villages["measured_class"]
    m_fast = measured == "meets"
    c_fast = villages["capability_class"] == "meets"
    slow = villages[in_scope & fibre & (measured == "below")]
    fast_mask = in_scope & ~fibre & (m_fast | c_fast)
    fast = villages[fast_mask].copy()
    fast["fast_basis"] = np.where(
        m_fast[fast_mask] & c_fast[fast_mask],
        "both",
        np.where(m_fast[fast_mask], "measured", "capability"),
    )
    return {"fibre_but_slow": slow, "fast_without_fibre": fast}
