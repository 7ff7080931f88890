"""Each configured input read, checked row by row, and put into the standard columns.

A loader returns a :class:`Loaded`: the frame (EPSG:4326), the issues found, and the input's
record for the manifest. Rows are only dropped with a recorded reason, so for every input
``rows_read == rows_used + sum(dropped)``. Register rows are never dropped for a geometry
problem: the village stays in the denominator with ``has_geometry = false``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ruralcov import io, units
from ruralcov.classify import parse_yes_no
from ruralcov.config import (
    BoundariesConfig,
    Config,
    FibreConfig,
    SpeedConfig,
    VillagesConfig,
)
from ruralcov.errors import SchemaError, did_you_mean
from ruralcov.periods import MISSING_PERIOD, no_period_column, period_rows
from ruralcov.sampling import days, sampling_keys, wall_clock_ns
from ruralcov.schema import (
    LEVELS,
    apply_register,
    cn_nbs_code_problems,
    read_codes,
    register_code_length,
    status_key,
    status_keys,
)
from ruralcov.validate import concat_issues, dropped_counts, issue, no_issues, row_issues

POLYGONAL = ("Polygon", "MultiPolygon")
LINEAR = ("LineString", "MultiLineString")


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
class Loaded:
    frame: gpd.GeoDataFrame
    issues: pd.DataFrame
    record: InputRecord


def input_record(
    layer: str, path: Path, rows: int, issues: pd.DataFrame, extra: dict[str, int] | None = None
) -> InputRecord:
    dropped = dropped_counts(issues, layer)
    for reason, n in (extra or {}).items():
        if n:
            dropped[reason] = dropped.get(reason, 0) + n
    return InputRecord(
        layer=layer,
        path=path,
        sha256=io.sha256_file(path),
        rows_read=rows,
        rows_used=rows - sum(dropped.values()),
        dropped=dropped,
    )


def _flag_duplicates(codes: pd.Series, *, layer: str, what: str) -> tuple[pd.Series, pd.DataFrame]:
    """Rows to keep (first of each code, code present) and the issues for the others."""
    missing = codes.isna() | (codes.astype("string").str.len() == 0)
    dup = codes.duplicated(keep="first") & ~missing
    issues = concat_issues(
        [
            row_issues(
                missing,
                layer=layer,
                reason="missing_code",
                dropped=True,
                message=f"{what} has no code; the row cannot be matched and is left out",
            ),
            row_issues(
                dup,
                layer=layer,
                reason="duplicate_code",
                dropped=True,
                codes=codes,
                message=f"{what} code appears more than once; the first row is used",
            ),
        ]
    )
    return ~(missing | dup), issues


def clean_polygons(
    geoms: gpd.GeoSeries, *, layer: str, codes: pd.Series, drop: bool
) -> tuple[gpd.GeoSeries, pd.DataFrame]:
    """Repair invalid polygons (make_valid, polygon parts kept) and blank non-polygons.

    Blanked rows get an issue marked ``dropped`` when ``drop`` (a boundaries file), otherwise
    not (a register row stays, without geometry).
    """
    values = np.asarray(geoms.values, dtype=object)
    missing = shapely.is_missing(values) | shapely.is_empty(values)
    kinds = pd.Series(shapely.get_type_id(values), index=geoms.index)
    polygonal = kinds.isin([3, 6]).to_numpy()  # Polygon, MultiPolygon
    wrong = ~missing & ~polygonal
    if wrong.any() and not polygonal.any():
        found = sorted(set(shapely.get_type(values[wrong]).tolist())) if hasattr(
            shapely, "get_type") else sorted({g.geom_type for g in values[wrong]})
        raise SchemaError(
            f"{layer}: every geometry is a {'/'.join(found)}, none a Polygon or MultiPolygon; "
            "a village needs its boundary polygon to say which assets and tests lie inside it. "
            "Give the village polygons (a [boundaries] file or a polygon layer)"
        )
    invalid = ~missing & polygonal & ~shapely.is_valid(values)
    if invalid.any():
        fixed = shapely.make_valid(values[invalid])
        # make_valid may return a collection; keep its polygonal part only.
        parts = [
            shapely.union_all([p for p in shapely.get_parts(g) if shapely.get_type_id(p) in (3, 6)])
            if shapely.get_type_id(g) == 7
            else g
            for g in fixed
        ]
        values[invalid] = parts
    values[wrong] = None
    findings = [
        (missing, "missing_geometry", "no geometry", drop),
        (wrong, "not_a_polygon", "geometry is not a Polygon or MultiPolygon", drop),
        (invalid, "invalid_geometry_repaired", "invalid polygon repaired with make_valid", False),
    ]
    issues = concat_issues(
        row_issues(pd.Series(mask), layer=layer, reason=reason, codes=codes, dropped=dropped,
                   message=message)
        for mask, reason, message, dropped in findings
    )
    return gpd.GeoSeries(values, index=geoms.index, crs=geoms.crs), issues


def load_villages(config: Config) -> tuple[Loaded, Loaded | None, list[InputRecord]]:
    """The register with standard columns and geometry (from itself or a boundaries file).

    Returns the register, the boundaries (when configured) and the records of level-name tables.
    """
    v = config.villages
    layer = "villages"
    frame, read_issues = io.read_layer(
        v.path,
        layer=v.layer,
        crs=v.crs,
        encoding=v.encoding,
        lon=v.lon,
        lat=v.lat,
        wkt=v.wkt,
        geometry="none" if config.boundaries else "optional",
        name=layer,
    )
    std = apply_register(
        frame,
        preset=v.register,
        code=v.code,
        name=v.name,
        levels=v.levels,
        kind=v.kind,
        layer=f"villages ({v.path.name})",
    )
    _require_villages(std, frame, v)
    # The register row each village came from, so auditors can find it in their own file.
    std["source_row"] = np.arange(1, len(std) + 1)
    keep, dup_issues = _flag_duplicates(std["village_code"], layer=layer, what="register entry")
    if config.boundaries is None:  # clean_polygons below reports them, with the code
        read_issues = read_issues[read_issues["reason"] != "missing_geometry"]
    issues = [read_issues, dup_issues]
    if v.register == "cn-nbs":
        bad = cn_nbs_code_problems(std["village_code"]) & keep
        issues.append(
            row_issues(
                bad,
                layer=layer,
                reason="bad_code",
                codes=std["village_code"],
                message="code is not the 12 digits of the cn-nbs register; "
                "its township/county/city/province codes may be wrong",
            )
        )
    issues.append(_parent_mismatch(std, frame, v, keep, layer))
    geometry = gpd.GeoSeries(frame.geometry.values, index=frame.index, crs="EPSG:4326")
    if config.boundaries is None:
        geometry, geo_issues = clean_polygons(
            geometry, layer=layer, codes=std["village_code"], drop=False
        )
        issues.append(geo_issues)
    all_issues = concat_issues(issues)
    register = Loaded(
        frame=gpd.GeoDataFrame(std[keep], geometry=geometry[keep], crs="EPSG:4326"),
        issues=all_issues,
        record=input_record(layer, v.path, len(frame), all_issues),
    )
    boundaries = None
    if config.boundaries is not None:
        boundaries = load_boundaries(
            config.boundaries,
            register.frame["village_code"],
            code_length=register_code_length(std["village_code"], preset=v.register),
        )
        geo = boundaries.frame.set_index("village_code").geometry
        merged = register.frame["village_code"].map(geo)
        register = Loaded(
            frame=register.frame.set_geometry(
                gpd.GeoSeries(merged.values, index=merged.index, crs="EPSG:4326")
            ),
            issues=register.issues,
            record=register.record,
        )
    names = []
    out = register.frame
    for level in LEVELS:
        if f"{level}_code" not in out.columns:
            continue
        out[f"{level}_name"] = None
        path = v.names.get(level)
        if path is None:
            continue
        table = io.read_table(path, encoding=v.encoding, name=f"names.{level}")
        missing = [c for c in ("code", "name") if c not in table.columns]
        if missing:
            raise SchemaError(
                f"names.{level}: {path} needs columns 'code' and 'name'; missing {missing}"
            )
        codes = read_codes(table["code"], source=f"names.{level} ({path.name})", column="code")
        lookup = table.assign(code=codes).drop_duplicates("code")
        out[f"{level}_name"] = out[f"{level}_code"].map(lookup.set_index("code")["name"])
        names.append(input_record(f"names.{level}", path, len(table), no_issues()))
    return register, boundaries, names


def load_boundaries(
    b: BoundariesConfig, register_codes: pd.Series, *, code_length: int | None = None
) -> Loaded:
    """Village polygons from a separate file, matched to the register by code.

    ``code_length`` is the register's (:func:`ruralcov.schema.register_code_length`): shorter
    all-digit codes lost digits in a spreadsheet, and their villages would silently have no
    polygon, so they stop the run (:func:`ruralcov.schema.read_codes`).
    """
    layer = "boundaries"
    frame, read_issues = io.read_layer(
        b.path,
        layer=b.layer,
        crs=b.crs,
        encoding=b.encoding,
        wkt=b.wkt,
        columns=[b.code],
        name=layer,
    )
    codes = read_codes(
        frame[b.code], source=f"{layer} ({b.path.name})", column=b.code, length=code_length
    )
    keep, dup_issues = _flag_duplicates(codes, layer=layer, what="boundary")
    unknown = keep & ~codes.isin(set(register_codes))
    geometry, geo_issues = clean_polygons(frame.geometry, layer=layer, codes=codes, drop=True)
    issues = concat_issues(
        [
            # clean_polygons reports missing geometries again, with the code: keep that one
            read_issues[read_issues["reason"] != "missing_geometry"].assign(dropped=False),
            dup_issues,
            row_issues(
                unknown,
                layer=layer,
                reason="unknown_code",
                codes=codes,
                dropped=True,
                message="boundary code is not in the village register; left out",
            ),
            geo_issues,
        ]
    )
    usable = keep & ~unknown & geometry.notna()
    out = gpd.GeoDataFrame(
        {"village_code": codes[usable]}, geometry=geometry[usable], crs="EPSG:4326"
    )
    return Loaded(frame=out, issues=issues, record=input_record(layer, b.path, len(frame), issues))


def status_classes(frame: pd.DataFrame, f: FibreConfig, layer: str) -> pd.Series:
    """Each row's status: ``operational``, ``not_operational`` (a known value such as
    ``planned``) or ``unknown`` (anything else, a blank included: reported, never counted).

    Every row is exactly one of the three, because the row's value, ``operational`` and
    :data:`NOT_OPERATIONAL_STATUSES` are compared in one form (:func:`status_key`): a status
    spelt ``In Service`` is counted, and one spelt ``in servce`` is reported. All rows are
    operational when no status column is set.
    """
    if not f.status:
        return pd.Series("operational", index=frame.index, dtype=object)
    if f.status not in frame.columns:
        raise SchemaError(
            f"{layer}: status column {f.status!r} not found in {f.path}"
            f"{did_you_mean(f.status, frame.columns)}; the file has "
            f'{list(frame.columns)[:20]}. Set status = "" if every asset is operational.'
        )
    keys = status_keys(frame[f.status])
    operational = keys.isin({status_key(s) for s in f.operational} - {None})
    known = keys.isin(_NOT_OPERATIONAL_KEYS)
    return pd.Series(
        np.where(operational, "operational", np.where(known, "not_operational", "unknown")),
        index=frame.index,
        dtype=object,
    )


def _unknown_status_issues(
    frame: pd.DataFrame, f: FibreConfig, layer: str, unknown: pd.Series, ids: pd.Series
) -> pd.DataFrame:
    """The ``unknown_status`` issues (not dropped: the row is read, but not counted)."""
    values = frame[f.status] if f.status in frame.columns else pd.Series("", index=frame.index)
    shown = values.map(repr).where(values.notna(), "empty")
    return row_issues(
        unknown,
        layer=layer,
        reason="unknown_status",
        codes=ids,
        message=(
            f"status {f.status!r} is " + shown.astype(str)
            + f", neither operational {list(f.operational)} nor a known not-operational "
            "value; the asset is not counted (add the value to operational if it means in "
            "service)"
        ),
    )


def load_fibre(f: FibreConfig, index: int, register_codes: pd.Series) -> tuple[Loaded, str]:
    """One fibre source as standard rows.

    Returns the frame and its role: ``table`` rows have ``village_code, has_fibre``; ``points``
    and ``routes`` rows have ``asset_id, status, operational`` and a geometry. An ``ofds``
    source is split by geometry type: nodes are access points, spans are routes (the role is
    ``ofds`` and the frame carries both, with a ``role`` column).
    """
    layer = f"fibre[{index}]"
    if f.kind == "table":
        table = io.read_table(f.path, encoding=f.encoding, name=layer)
        cols = [f.code] + ([f.value] if f.value else [])
        missing = [c for c in cols if c not in table.columns]
        if missing:
            raise SchemaError(
                f"{layer}: column(s) {missing} not found in {f.path}; "
                f"the file has {list(table.columns)[:20]}"
            )
        codes = read_codes(table[f.code], source=f"{layer} ({f.path.name})", column=f.code)
        status = status_classes(table, f, layer)
        operational = status == "operational"
        value = (
            parse_yes_no(table[f.value])
            if f.value
            else pd.Series(True, index=table.index, dtype="boolean")
        )
        bad = value.isna()
        unknown = ~codes.isin(set(register_codes)) & codes.notna()
        issues = concat_issues(
            [
                row_issues(
                    codes.isna(),
                    layer=layer,
                    reason="missing_code",
                    dropped=True,
                    message="fibre register row has no village code",
                ),
                row_issues(
                    unknown,
                    layer=layer,
                    reason="unknown_code",
                    codes=codes,
                    dropped=True,
                    message="village code is not in the register; left out",
                ),
                row_issues(
                    bad & ~unknown & codes.notna(),
                    layer=layer,
                    reason="bad_value",
                    codes=codes,
                    dropped=True,
                    message=f"{f.value!r} is not a yes/no value; left out",
                ),
            ]
        )
        used = codes.notna() & ~unknown & ~bad
        issues = concat_issues(
            [issues, _unknown_status_issues(table, f, layer, used & (status == "unknown"), codes)]
        )
        not_op = int((used & ~operational).sum())
        out = pd.DataFrame(
            {
                "village_code": codes[used & operational],
                "has_fibre": value[used & operational].astype(bool),
            }
        )
        record = input_record(layer, f.path, len(table), issues, {"not_operational": not_op})
        return Loaded(frame=gpd.GeoDataFrame(out), issues=issues, record=record), "table"

    frame, read_issues = io.read_layer(
        f.path,
        layer=f.layer,
        crs=f.crs,
        encoding=f.encoding,
        lon=f.lon,
        lat=f.lat,
        wkt=f.wkt,
        name=layer,
    )
    id_col = f.id if f.id in frame.columns else None
    if id_col is None and f.kind != "ofds":
        raise SchemaError(
            f"{layer}: id column {f.id!r} not found in {f.path}"
            f"{did_you_mean(f.id, frame.columns)}; the file has "
            f"{list(frame.columns)[:20]}"
        )
    ids = (
        frame[id_col].astype("string")
        if id_col
        else pd.Series([f"{layer}:{i + 1}" for i in range(len(frame))], index=frame.index)
    )
    status = status_classes(frame, f, layer)
    operational = status == "operational"
    types = frame.geometry.geom_type
    if f.kind == "access_points":
        role = pd.Series(np.where(types == "Point", "points", None), index=frame.index)
    elif f.kind == "routes":
        role = pd.Series(np.where(types.isin(LINEAR), "routes", None), index=frame.index)
    else:  # ofds: nodes and spans in one file
        role = pd.Series(
            np.where(types == "Point", "points", np.where(types.isin(LINEAR), "routes", None)),
            index=frame.index,
        )
    missing = frame.geometry.isna() | frame.geometry.is_empty
    wrong = role.isna() & ~missing
    expected = {"access_points": "Point", "routes": "LineString"}.get(f.kind, "Point/LineString")
    issues = concat_issues(
        [
            read_issues.assign(dropped=False),
            row_issues(
                missing,
                layer=layer,
                reason="missing_geometry",
                codes=ids,
                dropped=True,
                message="fibre asset has no geometry; left out",
            ),
            row_issues(
                wrong,
                layer=layer,
                reason="wrong_geometry_type",
                codes=ids,
                dropped=True,
                message=f"geometry is not a {expected}; left out",
            ),
            _unknown_status_issues(frame, f, layer, (status == "unknown") & ~missing & ~wrong,
                                   ids),
        ]
    )
    usable = ~missing & ~wrong
    not_op = int((usable & ~operational).sum())
    out = gpd.GeoDataFrame(
        {
            "asset_id": ids[usable].astype(object),
            "status": (frame[f.status][usable].astype(object) if f.status else "operational"),
            "operational": operational[usable].astype(bool),
            "role": role[usable],
            "source": layer,
            "max_distance_m": float(f.max_distance_m),
            "nearby_m": float(f.nearby_m),
        },
        geometry=frame.geometry[usable],
        crs="EPSG:4326",
    )
    record = input_record(layer, f.path, len(frame), issues, {"not_operational": not_op})
    return Loaded(frame=out, issues=issues, record=record), f.kind


def load_speed_tests(s: SpeedConfig) -> Loaded:
    """Speed tests with numeric measures; unusable rows dropped with a reason.

    The frame keeps the source row number in ``row`` so the join can report points outside
    every village against the right row.
    """
    layer = "speed"
    frame, read_issues = io.read_layer(
        s.path,
        layer=s.layer,
        crs=s.crs,
        encoding=s.encoding,
        lon=s.lon,
        lat=s.lat,
        name=layer,
    )
    if s.download not in frame.columns:
        raise SchemaError(
            f"speed: download column {s.download!r} not found in {s.path}"
            f"{did_you_mean(s.download, frame.columns)}; "
            f'the file has {list(frame.columns)[:20]}. Set download = "..." in [speed]'
        )
    require_sampling_columns(s, frame.columns, s.path)
    # A period of a period column: other periods' rows are not read (``skip``); rows without
    # a period are dropped for that reason alone (:mod:`ruralcov.periods`).
    skip = no_period = pd.Series(False, index=frame.index)
    if s.period_filter:
        if s.period not in frame.columns:
            raise no_period_column(s, frame.columns)
        take, missing = period_rows(frame[s.period], s)
        skip = pd.Series(~take, index=frame.index)
        no_period = pd.Series(take, index=frame.index)
        no_period[take] = missing
        gone = np.flatnonzero(~take | no_period.to_numpy()) + 1
        read_issues = read_issues[~read_issues["row"].isin(gone)]
    in_scope = ~(skip | no_period)  # the rows checked
    download = units.to_mbps(
        pd.to_numeric(frame[s.download], errors="coerce").astype(float), s.download_unit)
    no_geom = (frame.geometry.isna() | frame.geometry.is_empty) & in_scope
    has_geom = ~no_geom & in_scope
    bad = download.isna() & has_geom
    negative = (download < 0) & has_geom
    absurd = pd.Series(units.absurd(download.to_numpy()), index=frame.index) & has_geom
    units.check_plausible(units.SpeedTally.of(download.to_numpy(), has_geom & ~bad & ~negative),
                          column=s.download, path=s.path, unit=s.download_unit)
    duplicate = _duplicate_tests(frame) & has_geom & ~(bad | negative | absurd)
    issues = [
        read_issues.assign(dropped=read_issues["row"].notna()),
        row_issues(
            absurd,
            layer=layer,
            reason="absurd_speed",
            dropped=True,
            message=units.absurd_message(s.download, s.download_unit),
        ),
        row_issues(
            duplicate,
            layer=layer,
            reason="duplicate_test",
            dropped=True,
            message="exact copy of an earlier row (every column and the location); "
            "counted once",
        ),
        row_issues(
            no_geom & ~read_issues_mask(read_issues, len(frame)),
            layer=layer,
            reason="missing_geometry",
            dropped=True,
            message="speed test has no location",
        ),
        row_issues(
            bad,
            layer=layer,
            reason="bad_download",
            dropped=True,
            message=f"{s.download!r} is missing or not a number",
        ),
        row_issues(
            negative,
            layer=layer,
            reason="negative_speed",
            dropped=True,
            message=f"{s.download!r} is negative",
        ),
    ]
    out = pd.DataFrame({"row": np.arange(1, len(frame) + 1), "download_mbps": download})
    for key, col in (("upload", s.upload), ("latency", s.latency)):
        name = "upload_mbps" if key == "upload" else "latency_ms"
        if col and col in frame.columns:
            values = pd.to_numeric(frame[col], errors="coerce").astype(float)
            if key == "upload":  # latency is milliseconds whatever download_unit says
                values = units.to_mbps(values, s.download_unit)
            neg = values < 0
            issues.append(
                row_issues(
                    neg & has_geom & ~bad & ~negative,
                    layer=layer,
                    reason=f"negative_{key}",
                    message=f"{col!r} is negative; this value is ignored",
                )
            )
            out[name] = values.where(~neg)
        else:
            out[name] = np.nan
            if col:
                issues.append(
                    issue(
                        layer=layer,
                        reason="column_absent",
                        severity="info",
                        message=f"no {key} column {col!r} in {s.path.name}; "
                        f"{name} medians are left empty",
                    )
                )
    if s.device and s.device in frame.columns:
        out["device_id"] = frame[s.device].astype(object)
    else:
        out["device_id"] = None
        if s.device:
            issues.append(
                issue(
                    layer=layer,
                    reason="column_absent",
                    severity="info",
                    message=f"no device column {s.device!r} in {s.path.name}; "
                    "devices are unknown and min_devices is not applied",
                )
            )
    issues.append(row_issues(no_period, layer=layer, reason="missing_period",
                             message=MISSING_PERIOD, dropped=True))
    if s.time_column:
        ns, day_ok = wall_clock_ns(frame[s.time_column], column=s.time_column)
        out["day"], out["day_ok"] = days(ns), day_ok
        out["skey"] = sampling_keys(ns, out["download_mbps"].to_numpy(),
                                    out["upload_mbps"].to_numpy(), out["latency_ms"].to_numpy(),
                                    seed=s.seed or 0)
        checked = (has_geom & ~(bad | negative | absurd)).to_numpy()
        if checked.any() and not (day_ok & checked).any():
            raise SchemaError(no_time_message(s.time_column, s.path))
        issues.append(row_issues(~day_ok & checked, layer=layer, reason="bad_time",
                                 message=bad_time_message(s)))
    usable = has_geom & ~(bad | negative | absurd | duplicate)
    all_issues = concat_issues(issues)
    gdf = gpd.GeoDataFrame(out[usable], geometry=frame.geometry[usable], crs="EPSG:4326")
    gdf.attrs["has_device"] = bool(s.device and s.device in frame.columns)
    return Loaded(
        frame=gdf, issues=all_issues,
        record=input_record(layer, s.path, len(frame) - int(skip.sum()), all_issues),
    )


def require_sampling_columns(s: SpeedConfig, columns: Iterable[str], path: Path) -> None:
    """The device and time columns that ``statistic`` / ``sample`` need, or a SchemaError."""
    columns = list(columns)
    needs = [("device", s.device, 'statistic = "device_median"' if s.by_device else None),
             ("device", s.device, 'sample = "device_day"' if s.time_column else None),
             ("time", s.time_column, 'sample = "device_day"' if s.time_column else None)]
    for key, column, why in needs:
        if why and column not in columns:
            raise SchemaError(
                f"speed: {why} needs the {key} column {column!r}, not found in {path}"
                f"{did_you_mean(column, columns)}; the file has {columns[:20]}. "
                f'Set {key} = "..." in [speed]'
            )


def bad_time_message(s: SpeedConfig) -> str:
    return (f"{s.time_column!r} is missing or not a date and time; the test is kept, "
            "outside the device-day sampling")


def no_time_message(column: str, path: Path) -> str:
    return (f"speed: no value of the time column {column!r} in {path} reads as a date and "
            "time; give ISO 8601 text such as 2024-03-01T07:30:00 or a timestamp column, or "
            'set time = "..." in [speed]')


#: The ``sampled_out`` issue: a test left out by ``sample = "device_day"``.
SAMPLED_OUT = ("device-day sampling kept another test of this device on this day in this "
               "village")


def read_issues_mask(read_issues: pd.DataFrame, n: int) -> pd.Series:
    """True for rows the reader already reported (so they are not reported twice)."""
    mask = np.zeros(n, dtype=bool)
    rows = read_issues["row"].dropna().to_numpy(dtype=np.int64)
    mask[rows[(rows >= 1) & (rows <= n)] - 1] = True
    return pd.Series(mask)


def _duplicate_tests(frame: gpd.GeoDataFrame) -> pd.Series:
    """Row check: an exact copy of an earlier row (all attributes and the location).

    Exports that are appended twice or merged from overlapping queries repeat rows; counted
    twice they would inflate ``tests`` and could lift a village over ``min_tests``.
    """
    attrs = pd.DataFrame(frame.drop(columns=frame.geometry.name)).astype("string")
    geoms = np.asarray(frame.geometry.values, dtype=object)
    present = ~pd.isna(geoms)
    wkb = np.full(len(frame), None, dtype=object)
    wkb[present] = shapely.to_wkb(geoms[present], hex=True)
    key = attrs.assign(__wkb=wkb)
    return pd.Series(key.duplicated(keep="first").to_numpy(), index=frame.index)


#: Status values known to mean "not (yet / any more) in service". A value in neither this list
#: nor ``operational`` is reported as ``unknown_status``: it may be a typo of an operational
#: value ("in servce") that silently removes an asset from the count.
NOT_OPERATIONAL_STATUSES = frozenset(
    {
        "planned", "proposed", "design", "designed", "under_construction", "construction",
        "in_construction", "decommissioned", "retired", "removed", "abandoned", "inactive",
        "out_of_service", "damaged", "disused", "faulty",
        "规划", "计划", "在建", "建设中", "拆除", "停用", "废弃", "故障",
    }
)
_NOT_OPERATIONAL_KEYS = frozenset(status_key(s) for s in NOT_OPERATIONAL_STATUSES)


def _require_villages(std: pd.DataFrame, frame: pd.DataFrame, v: VillagesConfig) -> None:
    """Stop when the register has no rows or no administrative village: every share would be
    empty, which is never what the user meant."""
    if len(std) == 0:
        raise SchemaError(
            f"villages: {v.path} has a header but no data rows; the register must list one "
            "row per village-level unit"
        )
    if (std["kind"] == "village").any():
        return
    if v.register == "cn-nbs":
        fix = (
            f"with register = \"cn-nbs\" administrative villages are the rows whose "
            f"{v.name!r} ends in 村委会 or 村民委员会; check the name column, or use "
            f'register = "generic" with a kind column'
        )
    elif v.kind:
        found = frame[v.kind].astype("string").str.strip().value_counts().head(5).to_dict()
        fix = (
            f"the {v.kind!r} column must say 'village' for administrative villages "
            f"('community' for urban committees); it holds {found}"
        )
    else:  # pragma: no cover - without a kind column every row is a village
        fix = "set kind = \"...\" in [villages]"
    raise SchemaError(
        f"villages: none of the {len(std)} rows of {v.path} is an administrative village "
        f"(kind 'village'), so there is no denominator; {fix}"
    )


def _parent_mismatch(
    std: pd.DataFrame, frame: pd.DataFrame, v: VillagesConfig, keep: pd.Series, layer: str
) -> pd.DataFrame:
    """Row check: a village code whose prefix disagrees with its township/county code.

    cn-nbs: level columns named in ``levels`` are compared with the levels the 12-digit code
    implies (the code's are used). generic: only when the codes are hierarchical (at least 90 %
    of rows start with their level's code) are the other rows flagged.
    """
    codes = std["village_code"]
    found = [no_issues()]
    for level, col in v.levels.items():
        if v.register == "cn-nbs":
            if col not in frame.columns:
                raise SchemaError(
                    f"villages: level column {col!r} not found{did_you_mean(col, frame.columns)}; "
                    f"the file has {list(frame.columns)[:20]}"
                )
            given = read_codes(frame[col], source=f"{layer} ({v.path.name})", column=col)
            given = given.astype("string")
            implied = std[f"{level}_code"].astype("string")
            ok12 = ~cn_nbs_code_problems(codes)
            bad = (keep & ok12 & given.notna() & (given != implied)).fillna(False)
            message = (
                "code implies " + level + " " + implied.fillna("") + " but the " + col
                + " column says " + given.fillna("") + "; the code's prefix is used"
            )
        else:
            parent = std.get(f"{level}_code")
            if parent is None:
                continue
            text, par = codes.astype("string"), parent.astype("string")
            both = (keep & text.notna() & par.notna()).fillna(False)
            starts = pd.Series(
                [bool(c.startswith(p)) if b else False for c, p, b in zip(
                    text.fillna(""), par.fillna(""), both, strict=True)],
                index=std.index,
            )
            if not both.any() or starts[both].mean() < 0.9:
                continue  # codes are not hierarchical: nothing to compare
            bad = both & ~starts
            message = (
                "code does not start with its " + level + " code " + par.fillna("")
                + " as the other codes of this register do"
            )
        found.append(
            row_issues(bad, layer=layer, reason="code_parent_mismatch", codes=codes,
                       message=message.astype(object))
        )
    return concat_issues(found)
