"""Column names of every table ruralcov writes, and the register presets that fill them.

A register preset turns a user's register table (one row per village-level unit) into the
standard columns ``village_code, village_name, kind`` and one ``<level>_code`` per hierarchy
level. ``cn-nbs`` derives everything from the Chinese 12-digit statistical code and the name;
``generic`` reads levels and kind from named columns. Nothing outside this module knows China.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ruralcov.errors import SchemaError, did_you_mean

#: Hierarchy levels from the largest to the smallest; a register may have any subset.
LEVELS: tuple[str, ...] = ("province", "city", "county", "township")

#: Village kinds. Only ``village`` (administrative village) is in the fibre denominator;
#: ``community`` (urban residents' committee) is held to the urban speed target.
KINDS: tuple[str, ...] = ("village", "community", "other")

SPEED_CLASSES: tuple[str, ...] = ("meets", "below", "insufficient_data")

FIBRE_BASES: tuple[str, ...] = ("register", "access_point_inside", "access_point_near", "none")

VILLAGE_COLUMNS: tuple[str, ...] = (
    "village_code",
    "village_name",
    "kind",
    "township_code",
    "township_name",
    "county_code",
    "county_name",
    "city_code",
    "city_name",
    "province_code",
    "province_name",
    "has_geometry",
    "fibre",
    "fibre_basis",
    "fibre_asset_id",
    "fibre_distance_m",
    "fibre_nearby",
    "fibre_route_id",
    "fibre_route_distance_m",
    "nearest_asset_id",
    "nearest_asset_m",
    "tests",
    "devices",
    "download_median_mbps",
    "download_ci_low_mbps",
    "download_ci_high_mbps",
    "upload_median_mbps",
    "latency_median_ms",
    "share_tests_at_target",
    "download_target_mbps",
    "speed_class",
    "meets_targets",
)

SUMMARY_COLUMNS: tuple[str, ...] = (
    "level",
    "code",
    "name",
    "villages",
    "villages_with_geometry",
    "fibre_villages",
    "fibre_share",
    "fibre_target",
    "fibre_gap_villages",
    "speed_meets",
    "speed_below",
    "speed_insufficient",
    "speed_share",
    "communities",
    "communities_speed_meets",
    "communities_speed_share",
)

ISSUE_COLUMNS: tuple[str, ...] = ("severity", "layer", "row", "code", "reason", "message")

REGISTERS: tuple[str, ...] = ("cn-nbs", "generic")

# cn-nbs: digits of the 12-digit code that identify each level.
_CN_NBS_PREFIX = {"province": 2, "city": 4, "county": 6, "township": 9}
_CN_VILLAGE_SUFFIXES = ("村委会", "村民委员会")
_CN_COMMUNITY_SUFFIXES = ("居委会", "居民委员会")


def cn_nbs_kind(names: pd.Series) -> pd.Series:
    """Kind from a Chinese register name: 村(民)委员会 → village, 居(民)委员会 → community.

    Examples
    --------
    >>> cn_nbs_kind(pd.Series(["东关村委会", "师范街社区居委会", "园区社区"])).tolist()
    ['village', 'community', 'other']
    """
    text = names.astype("string").fillna("").str.strip()
    kind = np.where(
        text.str.endswith(_CN_VILLAGE_SUFFIXES),
        "village",
        np.where(text.str.endswith(_CN_COMMUNITY_SUFFIXES), "community", "other"),
    )
    return pd.Series(kind, index=names.index, name="kind", dtype=object)


def normalise_codes(values: pd.Series) -> pd.Series:
    """Codes as text without surrounding blanks; numbers read as floats lose their ``.0``."""
    out = values.astype("string").str.strip()
    out = out.str.replace(r"\.0$", "", regex=True)
    return out.astype(object).where(out.notna(), None)


def apply_register(
    table: pd.DataFrame,
    *,
    preset: str,
    code: str,
    name: str,
    levels: Mapping[str, str] | None = None,
    kind: str | None = None,
    layer: str = "villages",
) -> pd.DataFrame:
    """Standard register columns from a user's table, aligned to its index.

    Returns ``village_code, village_name, kind`` and ``<level>_code`` for each level the preset
    provides. Raises :class:`SchemaError` listing every missing column at once.
    """
    if preset not in REGISTERS:
        raise SchemaError(f"register preset {preset!r} is not known; use one of {list(REGISTERS)}")
    levels = dict(levels or {})
    unknown = sorted(set(levels) - set(LEVELS))
    if unknown:
        raise SchemaError(f"{layer}: levels {unknown} are not known; levels are {list(LEVELS)}")
    needed = [code, name] + (list(levels.values()) if preset == "generic" else [])
    if preset == "generic" and kind:
        needed.append(kind)
    missing = [c for c in needed if c not in table.columns]
    if missing:
        hints = "".join(did_you_mean(m, table.columns) for m in missing)
        raise SchemaError(
            f"{layer}: column(s) {missing} not found{hints}; the file has "
            f"{list(table.columns)[:20]}. "
            "Set the column names in the [villages] section of the configuration."
        )
    out = pd.DataFrame(index=table.index)
    out["village_code"] = normalise_codes(table[code])
    out["village_name"] = table[name].astype("string").str.strip().astype(object)
    if preset == "cn-nbs":
        out["kind"] = cn_nbs_kind(table[name])
        for level, digits in _CN_NBS_PREFIX.items():
            out[f"{level}_code"] = out["village_code"].str.slice(0, digits)
    else:
        if kind:
            values = table[kind].astype("string").str.strip().str.lower()
            out["kind"] = values.where(values.isin(KINDS), "other").fillna("other").astype(object)
        else:
            out["kind"] = "village"
        for level in LEVELS:
            if level in levels:
                out[f"{level}_code"] = normalise_codes(table[levels[level]])
    return out


def cn_nbs_code_problems(codes: pd.Series) -> pd.Series:
    """True where a code is not the 12 digits the cn-nbs preset needs."""
    return ~codes.astype("string").fillna("").str.fullmatch(r"\d{12}")


def present_levels(villages: pd.DataFrame) -> list[str]:
    """Levels, largest first, for which the villages table has any code."""
    return [
        lv
        for lv in LEVELS
        if f"{lv}_code" in villages.columns and villages[f"{lv}_code"].notna().any()
    ]
