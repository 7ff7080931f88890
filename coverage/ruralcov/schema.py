"""Column names of every table ruralcov writes, and the register presets that fill them.

A register preset turns a user's register table (one row per village-level unit) into the
standard columns ``village_code, village_name, kind`` and one ``<level>_code`` per hierarchy
level. ``cn-nbs`` derives everything from the Chinese 12-digit statistical code and the name;
``generic`` reads levels and kind from named columns. Nothing outside this module knows China.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

import numpy as np
import pandas as pd

from ruralcov.errors import SchemaError, missing_columns

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

#: One line defining each column ruralcov publishes (village, summary and issue tables): the
#: column comments of the PostGIS output (:mod:`ruralcov.report.postgis`). Level columns
#: (``<level>_code`` / ``<level>_name``) are defined by :func:`column_definition`.
COLUMN_DEFINITIONS: dict[str, str] = {
    "village_code": "Village code from the register (text, leading zeros kept).",
    "village_name": "Village name from the register.",
    "kind": "village (administrative village, in the fibre denominator), community (urban "
            "residents' committee, urban speed target) or other (reported, never counted).",
    "has_geometry": "Whether the village has a polygon (without one it stays in the "
                    "denominator, with no fibre by position and no speed tests).",
    "fibre": "Fibre: a fibre register says yes, or an operational access point lies inside or "
             "within max_distance_m of the polygon.",
    "fibre_basis": "Why the village has fibre: register, access_point_inside, "
                   "access_point_near, or none.",
    "fibre_asset_id": "The operational access point that gives the village fibre (lowest id "
                      "when several are equally near).",
    "fibre_distance_m": "Distance in metres from that access point to the polygon.",
    "fibre_nearby": "A village without fibre that an operational route passes within nearby_m "
                    "of (reported, never counted).",
    "fibre_route_id": "The nearby operational fibre route.",
    "fibre_route_distance_m": "Distance in metres from that route to the polygon.",
    "nearest_asset_id": "The nearest operational access point, whatever its distance.",
    "nearest_asset_m": "Distance in metres to that access point.",
    "tests": "Usable speed tests whose point the polygon covers (a point on a shared edge "
             "goes to the lowest village code).",
    "devices": "Distinct device ids among those tests.",
    "download_median_mbps": "Median download of the tests, Mbit/s (exact).",
    "download_ci_low_mbps": "Lower end of the distribution-free 95 % interval of the median "
                            "(empty for 5 tests or fewer).",
    "download_ci_high_mbps": "Upper end of the distribution-free 95 % interval of the median.",
    "upload_median_mbps": "Median upload of the tests, Mbit/s.",
    "latency_median_ms": "Median latency of the tests, milliseconds.",
    "share_tests_at_target": "Tests at or above the village's download target / tests.",
    "download_target_mbps": "The village's download target: the village target, or the "
                            "community target for communities.",
    "speed_class": "meets (median at or above the target), below, or insufficient_data (fewer "
                   "than min_tests tests or min_devices devices).",
    "meets_targets": "fibre and speed_class = meets.",
    "source_row": "The register row the village came from (1 = the first data row).",
    "level": "The area level: province, city, county or township.",
    "code": "The area's code (summaries), or the code of the row an issue is about.",
    "name": "The area's name.",
    "villages": "Administrative villages in the area (the denominator of the shares).",
    "villages_with_geometry": "Of these, villages with a polygon.",
    "fibre_villages": "Administrative villages with fibre.",
    "fibre_share": "fibre_villages / villages.",
    "fibre_target": "The fibre share to reach.",
    "fibre_gap_villages": "Villages still to connect: max(0, ceil(fibre_target x villages) - "
                          "fibre_villages), in exact arithmetic.",
    "speed_meets": "Administrative villages whose speed class is meets.",
    "speed_below": "Administrative villages whose speed class is below.",
    "speed_insufficient": "Administrative villages with insufficient speed data.",
    "speed_share": "speed_meets / villages.",
    "communities": "Communities (urban residents' committees) in the area.",
    "communities_speed_meets": "Communities meeting the community speed target.",
    "communities_speed_share": "communities_speed_meets / communities.",
    "severity": "error (the row is left out), warning or info.",
    "layer": "The input the finding is about (villages, boundaries, fibre[0], speed, ...).",
    "row": "The 1-based data row of that input (empty for a finding about the whole input).",
    "reason": "The rule that found it (negative_speed, duplicate_code, ...).",
    "message": "What was found and what was done, in words.",
    "dropped": "Whether the row was left out of the analysis.",
}


def column_definition(column: str) -> str:
    """The one-line definition of a published column.

    Parameters
    ----------
    column
        A column of the village, summary or issue tables.

    Returns
    -------
    str
        Its definition; columns without one (evidence columns of capability records, say)
        point to the documentation.

    Examples
    --------
    >>> column_definition("county_code")
    "Code of the village's county (from the register)."
    """
    if column in COLUMN_DEFINITIONS:
        return COLUMN_DEFINITIONS[column]
    for level in LEVELS:
        if column == f"{level}_code":
            return f"Code of the village's {level} (from the register)."
        if column == f"{level}_name":
            return f"Name of the village's {level} (from its names table)."
    return f"{column}: see the column reference of the ruralcov documentation (run folder)."


REGISTERS: tuple[str, ...] = ("cn-nbs", "generic")

# cn-nbs: digits of the 12-digit code that identify each level.
_CN_NBS_PREFIX = {"province": 2, "city": 4, "county": 6, "township": 9}
_CN_VILLAGE_SUFFIXES = ("村委会", "村民委员会")
_CN_COMMUNITY_SUFFIXES = ("居委会", "居民委员会")


def cn_nbs_kind(names: pd.Series) -> pd.Series:
    """Kind from a Chinese register name: 村(民)委员会 → village, 居(民)委员会 → community.

    Parameters
    ----------
    names
        Register names.

    Returns
    -------
    pandas.Series
        ``kind``: ``village``, ``community`` or ``other``, aligned with ``names``.

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


#: Runs of blanks, hyphens and underscores: one ``_`` in a status key.
_STATUS_SEPARATORS = re.compile(r"[\s\-_\u2010-\u2015\u2212]+")


def status_key(value: object) -> str | None:
    """The form in which status values are compared; None for a blank or missing status.

    One normalisation for the asset's status, the configured ``operational`` values and the
    known not-operational values, so that a status is either counted or reported, never
    neither: NFKC (full-width letters become plain), case folded, blanks around removed and
    each run of blanks, hyphens and underscores made one ``_``.

    Parameters
    ----------
    value
        A status cell or a configured status value.

    Returns
    -------
    str or None
        The key; None for a blank or missing value.

    Examples
    --------
    >>> [status_key(s) for s in ["In Service", "in-service", "ＩＮ＿ＳＥＲＶＩＣＥ"]]
    ['in_service', 'in_service', 'in_service']
    >>> status_key("  "), status_key(None)
    (None, None)
    """
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    text = unicodedata.normalize("NFKC", str(value)).casefold()
    return _STATUS_SEPARATORS.sub("_", text).strip("_") or None


def status_keys(values: pd.Series) -> pd.Series:
    """:func:`status_key` of every value (computed once per distinct value).

    Parameters
    ----------
    values
        A status column.

    Returns
    -------
    pandas.Series
        The keys (None for blank or missing), aligned with ``values``.
    """
    positions, uniques = pd.factorize(values, use_na_sentinel=True)
    keys = np.array([status_key(u) for u in uniques] + [None], dtype=object)
    return pd.Series(keys[positions], index=values.index, name=values.name, dtype=object)


def normalise_codes(values: pd.Series) -> pd.Series:
    """Codes as text without surrounding blanks; missing codes are None.

    A numeric column (GeoPackage, Parquet) becomes integer text: floats are exact integers
    below 2**53, so ``140105001001.0`` is ``"140105001001"``. Text is never rewritten (a
    trailing ``.0`` in text is a spreadsheet's doing, which :func:`read_codes` refuses), and
    a float that is no exact integer keeps its digits for :func:`read_codes` to report.

    Parameters
    ----------
    values
        A code column as read.

    Returns
    -------
    pandas.Series
        Text codes (object dtype), None where missing, named and aligned as ``values``.

    Examples
    --------
    >>> normalise_codes(pd.Series([140105001001.0, None])).tolist()
    ['140105001001', None]
    """
    if pd.api.types.is_integer_dtype(values.dtype):
        out = values.astype("string")
    elif pd.api.types.is_float_dtype(values.dtype):
        numbers = values.to_numpy(dtype="float64", na_value=np.nan)
        out = pd.Series(
            [_code_text(x) if x == x else None for x in numbers.tolist()],
            index=values.index,
            dtype="string",
        )
    else:
        if pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
            values = values.map(_code_text, na_action="ignore")  # numbers among text cells
        out = values.astype("string").str.strip()
    return out.astype(object).where(out.notna(), None).rename(values.name)


def _code_text(x: object) -> object:
    """An exact whole number as integer text; anything else unchanged (a float as its repr)."""
    if isinstance(x, bool | np.bool_) or not isinstance(x, int | float | np.number):
        return x
    if isinstance(x, int | np.integer):
        return str(int(x))
    value = float(x)  # type: ignore[arg-type]
    exact = np.isfinite(value) and abs(value) < _EXACT_BELOW and value == np.floor(value)
    return str(int(value)) if exact else repr(value)


#: Floats hold integers exactly only below this magnitude (53 bits of mantissa).
_EXACT_BELOW = 2.0**53

SPREADSHEET = "changed by a spreadsheet"
#: The fix named by every :func:`read_codes` error about text a spreadsheet changed.
SPREADSHEET_FIX = "format the column as text in the spreadsheet and export again"


def read_codes(
    values: pd.Series, *, source: str, column: str, length: int | None = None
) -> pd.Series:
    """Codes read from a user's file, or a :class:`SchemaError` when a spreadsheet changed them.

    Excel shows a 12-digit code as ``1.40121E+11`` and saves it so: the digits after the sixth
    are gone, and different villages collapse into one code. Numbers written as ``...0.0``
    and all-digit codes that lost leading zeros are the same accident. None of these can be
    repaired, and reading them as they are would move villages in or out of the denominator
    silently, so the run stops with the file, the column, an example row and the fix.

    Parameters
    ----------
    values
        The code column as read, in source row order (row ``i`` of it is data row ``i + 1``).
    source
        The input as named in messages, with its file: ``"villages (register.csv)"``.
    column
        The column's name in the file.
    length
        The register's code length (:func:`register_code_length`), for the register and its
        boundaries: all-digit codes shorter than it lost digits. Other inputs pass None, as
        they hold codes of any level, and a code not in the register is reported there.

    Returns
    -------
    pandas.Series
        :func:`normalise_codes` of ``values``.

    Examples
    --------
    >>> read_codes(pd.Series([140105001001.0]), source="x", column="code").tolist()
    ['140105001001']
    >>> read_codes(pd.Series(["1.40121E+11"]), source="x.csv", column="code")
    Traceback (most recent call last):
    ruralcov.errors.SchemaError: x.csv: column 'code' holds 1 code(s) changed by a spreadsheet, \
e.g. row 1 '1.40121E+11' (scientific notation: only the first digits of the code are left); \
format the column as text in the spreadsheet and export again
    """
    codes = normalise_codes(values)
    text = codes.astype("string")
    # Cells that were numbers (a float column, or floats among text) are checked as numbers;
    # text cells for what a spreadsheet writes when it took the codes for numbers.
    if pd.api.types.is_float_dtype(values.dtype):
        numbers = values.notna()
    elif pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty", "integer"):
        numbers = pd.Series(False, index=values.index)
    else:
        numbers = values.map(lambda x: isinstance(x, float | np.floating)).astype(bool)
    words = ~numbers & text.notna()
    # '.0' codes among '.1', '.2' codes are a dotted scheme, not a float export
    decimals = (words & text.str.fullmatch(r"\d+\.\d*[1-9]\d*").fillna(False)).any()
    checks = [
        (numbers & ~text.str.fullmatch(r"-?\d+").fillna(False), "stored as numbers",
         "a number that is not an exact whole number: a fraction, or beyond 2**53 where floats "
         "skip integers", "store the codes as text (a string column) and export again"),
        (words & text.str.fullmatch(r"[+-]?\d(\.\d+)?[eE][+-]?\d+").fillna(False), SPREADSHEET,
         "scientific notation: only the first digits of the code are left", SPREADSHEET_FIX),
        (words & text.str.fullmatch(r"\d+\.0+").fillna(False) & (not decimals), SPREADSHEET,
         "a number written with '.0': the column was read as numbers", SPREADSHEET_FIX),
    ]
    if length is not None:
        digits = text.str.fullmatch(r"\d+").fillna(False)
        checks.append((digits & (text.str.len() < length), SPREADSHEET,
                       f"fewer digits than the {length} of the register's codes: leading zeros "
                       "or digits were lost", SPREADSHEET_FIX))
    for mask, what, why, fix in checks:
        bad = np.flatnonzero(mask.to_numpy(dtype=bool, na_value=False))
        if len(bad):
            first = values.iloc[bad[0]]
            raise SchemaError(
                f"{source}: column {column!r} holds {len(bad)} code(s) {what}, e.g. row "
                f"{bad[0] + 1} {str(first)!r} ({why}); {fix}"
            )
    return codes


def register_code_length(codes: pd.Series, *, preset: str) -> int | None:
    """The length every all-digit code of a register should have, or None when there is none.

    ``cn-nbs`` codes have 12 digits. A ``generic`` register has a length when its codes are
    digits and one length holds at least 90 % of them: a few shorter ones then lost leading
    zeros rather than following another scheme.

    Parameters
    ----------
    codes
        The register's code column.
    preset
        The register preset (:data:`REGISTERS`).

    Returns
    -------
    int or None
        The length, or None when the codes have no common length.

    Examples
    --------
    >>> register_code_length(pd.Series(["0101", "0102", "0103"] * 4), preset="generic")
    4
    """
    if preset == "cn-nbs":
        return 12
    text = normalise_codes(codes).astype("string").dropna()
    text = text[text.str.len() > 0]
    digits = text[text.str.fullmatch(r"\d+")]
    if digits.empty:
        return None
    lengths = digits.str.len().value_counts()
    top = int(lengths.idxmax())
    return top if lengths.max() >= 0.9 * len(text) else None


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
    """Standard register columns from a user's table.

    The preset is the one place that knows a register's conventions (for ``cn-nbs``, China's
    statistical codes and names); everything after it reads the standard columns.

    Parameters
    ----------
    table
        The register as read, one row per village-level unit.
    preset
        ``cn-nbs`` (levels and kind from the 12-digit code and the name) or ``generic``.
    code, name
        The code and name columns.
    levels
        ``generic``: level -> the column holding that level's code.
    kind
        ``generic``: the column holding the kind (None: every unit is a village).
    layer
        The input as named in messages.

    Returns
    -------
    pandas.DataFrame
        Aligned to ``table``'s index: ``village_code, village_name, kind`` and
        ``<level>_code`` for each level the preset provides.

    Raises
    ------
    SchemaError
        Listing every missing column at once, and for codes a spreadsheet changed
        (:func:`read_codes`, with the :func:`register_code_length`).
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
    missing, hints = missing_columns(needed, table.columns)
    if missing:
        raise SchemaError(
            f"{layer}: column(s) {missing} not found{hints}; the file has "
            f"{list(table.columns)[:20]}. "
            "Set the column names in the [villages] section of the configuration."
        )
    out = pd.DataFrame(index=table.index)
    length = register_code_length(table[code], preset=preset)
    out["village_code"] = read_codes(table[code], source=layer, column=code, length=length)
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
                out[f"{level}_code"] = read_codes(
                    table[levels[level]], source=layer, column=levels[level]
                )
    return out


def cn_nbs_code_problems(codes: pd.Series) -> pd.Series:
    """Where a code is not the 12 digits the cn-nbs preset derives its levels from.

    The preset cuts each level's code from the village code (province: 2 digits, ..., township:
    9), so any other code would put a village in a wrong or made-up area.

    Parameters
    ----------
    codes
        Village codes.

    Returns
    -------
    pandas.Series
        True where a code is not 12 digits (or missing).
    """
    return ~codes.astype("string").fillna("").str.fullmatch(r"\d{12}")


def present_levels(villages: pd.DataFrame) -> list[str]:
    """The levels a village table can be summarised at.

    Parameters
    ----------
    villages
        A village table with ``<level>_code`` columns.

    Returns
    -------
    list of str
        Levels, largest first, for which the table has any code.
    """
    return [
        lv
        for lv in LEVELS
        if f"{lv}_code" in villages.columns and villages[f"{lv}_code"].notna().any()
    ]
