"""Each configured input read, checked row by row, and put into the standard columns.

A loader returns a :class:`Loaded`: the frame (EPSG:4326), the issues found, and the input's
record for the manifest. Rows are only dropped with a recorded reason, so for every input
``rows_read == rows_used + sum(dropped)``. Register rows are never dropped for a geometry
problem: the village stays in the denominator with ``has_geometry = false``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ruralcov import checks, io, presets, units
from ruralcov.classify import parse_yes_no
from ruralcov.config import (
    BoundariesConfig,
    Config,
    FibreConfig,
    SpeedConfig,
    VillagesConfig,
)
from ruralcov.errors import SchemaError, did_you_mean, require_columns
from ruralcov.periods import period_rows
from ruralcov.schema import (
    LEVELS,
    apply_register,
    cn_nbs_code_problems,
    read_codes,
    register_code_length,
    status_key,
    status_keys,
)
from ruralcov.validate import concat_issues, dropped_counts, no_issues, row_issues

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
    layer: str, path: Path, rows: int, issues: pd.DataFrame, *,
    extra: dict[str, int] | None = None, digest: str | None = None,
) -> InputRecord:
    """The manifest's record of one input.

    Parameters
    ----------
    layer
        The input (``villages``, ``fibre[0]``, ``speed``, ...).
    path
        Its file (hashed here), or its database (:class:`ruralcov.config.DatabaseSource`).
    rows
        Rows read.
    issues
        Its findings: the rows they drop are counted by reason.
    extra
        Rows left out for other reasons (reason -> rows), such as assets not in service.
    digest
        The content hash of a database input (:func:`ruralcov.io.content_hash`), recorded in
        place of a file's SHA-256; None hashes the file.

    Returns
    -------
    InputRecord
        Rows read = rows used + the rows dropped.
    """
    dropped = dropped_counts(issues, layer)
    for reason, n in (extra or {}).items():
        if n:
            dropped[reason] = dropped.get(reason, 0) + n
    return InputRecord(
        layer=layer,
        path=path,
        sha256=digest if digest is not None else io.sha256_file(path),
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

    Parameters
    ----------
    geoms
        The polygons.
    layer
        The input, for the issues.
    codes
        Each row's village code, for the issues.
    drop
        Blanked rows are dropped (a boundaries file); otherwise a register row stays, without
        geometry.

    Returns
    -------
    geometries, issues
        The cleaned polygons and the findings (``missing_geometry``, ``not_a_polygon``,
        ``invalid_geometry_repaired``).

    Raises
    ------
    SchemaError
        When no geometry at all is a polygon (points or lines given for villages).
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

    Parameters
    ----------
    config
        The run's configuration (``[villages]``, ``[boundaries]``).

    Returns
    -------
    register, boundaries, names
        The register, the boundaries (None unless configured) and the records of the
        level-name tables.
    """
    v = config.villages
    layer = "villages"
    frame, read_issues = io.read_layer(
        v.path, layer=v.layer, crs=v.crs, encoding=v.encoding, lon=v.lon, lat=v.lat, wkt=v.wkt,
        geometry="none" if config.boundaries else "optional", name=layer,
    )
    std = apply_register(frame, preset=v.register, code=v.code, name=v.name, levels=v.levels,
                         kind=v.kind, layer=f"villages ({v.path.name})")
    _require_villages(std, frame, v)
    # The register row each village came from, so auditors can find it in their own file.
    std["source_row"] = np.arange(1, len(std) + 1)
    keep, dup_issues = _flag_duplicates(std["village_code"], layer=layer, what="register entry")
    if config.boundaries is None:  # clean_polygons below reports them, with the code
        read_issues = read_issues[read_issues["reason"] != "missing_geometry"]
    issues = [read_issues, dup_issues]
    if v.register == "cn-nbs":
        issues.append(row_issues(
            cn_nbs_code_problems(std["village_code"]) & keep, layer=layer, reason="bad_code",
            codes=std["village_code"],
            message="code is not the 12 digits of the cn-nbs register; "
            "its township/county/city/province codes may be wrong",
        ))
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
        record=input_record(layer, v.path, len(frame), all_issues,
                            digest=io.content_hash(frame)),
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
        register = dataclasses.replace(register, frame=register.frame.set_geometry(
            gpd.GeoSeries(merged.values, index=merged.index, crs="EPSG:4326")))
    return register, boundaries, _level_names(register.frame, v)


def _level_names(out: gpd.GeoDataFrame, v: VillagesConfig) -> list[InputRecord]:
    """Add each level's ``<level>_name`` column to the register (from its names table, empty
    without one); the tables' records."""
    names = []
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
    return names


def load_boundaries(
    b: BoundariesConfig, register_codes: pd.Series, *, code_length: int | None = None
) -> Loaded:
    """Village polygons from a separate file, matched to the register by code.

    ``code_length`` is the register's (:func:`ruralcov.schema.register_code_length`): shorter
    all-digit codes lost digits in a spreadsheet, and their villages would silently have no
    polygon, so they stop the run (:func:`ruralcov.schema.read_codes`).

    Parameters
    ----------
    b
        The ``[boundaries]`` section.
    register_codes
        The register's village codes.
    code_length
        The register's code length.

    Returns
    -------
    Loaded
        ``village_code`` and a polygon per usable row, the findings and the record.
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
    return Loaded(frame=out, issues=issues, record=input_record(
        layer, b.path, len(frame), issues, digest=io.content_hash(frame)))


def status_classes(frame: pd.DataFrame, f: FibreConfig, layer: str) -> pd.Series:
    """Each row's status: ``operational``, ``not_operational`` (a known value such as
    ``planned``) or ``unknown`` (anything else, a blank included: reported, never counted).

    Every row is exactly one of the three, because the row's value, ``operational`` and
    :data:`NOT_OPERATIONAL_STATUSES` are compared in one form (:func:`status_key`): a status
    spelt ``In Service`` is counted, and one spelt ``in servce`` is reported. All rows are
    operational when no status column is set.

    Parameters
    ----------
    frame
        The source's rows.
    f
        The ``[[fibre]]`` block (its status column and operational values).
    layer
        The input, for the error message.

    Returns
    -------
    pandas.Series
        One class per row.

    Raises
    ------
    SchemaError
        When the status column is not in the file.
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

    Parameters
    ----------
    f
        The ``[[fibre]]`` block.
    index
        Its position among the fibre sources (the layer is ``fibre[<index>]``).
    register_codes
        The register's village codes (a table's rows are matched to them).

    Returns
    -------
    loaded, role
        The frame, its findings and record, and its role: ``table`` rows have
        ``village_code, has_fibre``; ``points`` and ``routes`` rows have ``asset_id, status,
        operational`` and a geometry. An ``ofds`` source is split by geometry type: nodes are
        access points, spans are routes (the role is ``ofds`` and the frame carries both, with
        a ``role`` column).
    """
    layer = f"fibre[{index}]"
    if f.kind == "table":
        return _fibre_table(f, layer, register_codes), "table"
    return _fibre_assets(f, layer), f.kind


def _fibre_table(f: FibreConfig, layer: str, register_codes: pd.Series) -> Loaded:
    """A fibre register: one yes/no row per village code."""
    table = io.read_table(f.path, encoding=f.encoding, name=layer)
    cols = [f.code] + ([f.value] if f.value else [])
    require_columns(cols, table.columns, where=f"{layer}: {f.path}",
                    fix='Set code = "..." (and value = "...") in [[fibre]]')
    codes = read_codes(table[f.code], source=f"{layer} ({f.path.name})", column=f.code)
    status = status_classes(table, f, layer)
    operational = status == "operational"
    value = (parse_yes_no(table[f.value]) if f.value
             else pd.Series(True, index=table.index, dtype="boolean"))
    bad = value.isna()
    unknown = ~codes.isin(set(register_codes)) & codes.notna()
    used = codes.notna() & ~unknown & ~bad
    issues = concat_issues([
        row_issues(codes.isna(), layer=layer, reason="missing_code", dropped=True,
                   message="fibre register row has no village code"),
        row_issues(unknown, layer=layer, reason="unknown_code", codes=codes, dropped=True,
                   message="village code is not in the register; left out"),
        row_issues(bad & ~unknown & codes.notna(), layer=layer, reason="bad_value", codes=codes,
                   dropped=True, message=f"{f.value!r} is not a yes/no value; left out"),
        _unknown_status_issues(table, f, layer, used & (status == "unknown"), codes),
    ])
    not_op = int((used & ~operational).sum())
    out = pd.DataFrame({"village_code": codes[used & operational],
                        "has_fibre": value[used & operational].astype(bool)})
    record = input_record(layer, f.path, len(table), issues,
                          extra={"not_operational": not_op}, digest=io.content_hash(table))
    return Loaded(frame=gpd.GeoDataFrame(out), issues=issues, record=record)


def _asset_roles(frame: gpd.GeoDataFrame, kind: str) -> pd.Series:
    """``points`` or ``routes`` for each row whose geometry type fits the source's kind, None
    for the others."""
    types = frame.geometry.geom_type
    points = np.where(types == "Point", "points", None)
    routes = np.where(types.isin(LINEAR), "routes", None)
    if kind == "access_points":
        return pd.Series(points, index=frame.index)
    if kind == "routes":
        return pd.Series(routes, index=frame.index)
    return pd.Series(np.where(types == "Point", "points", routes), index=frame.index)  # ofds


def _fibre_assets(f: FibreConfig, layer: str) -> Loaded:
    """Fibre access points, routes, or both (OFDS nodes and spans), with a geometry."""
    frame, read_issues = io.read_layer(f.path, layer=f.layer, crs=f.crs, encoding=f.encoding,
                                       lon=f.lon, lat=f.lat, wkt=f.wkt, name=layer)
    id_col = f.id if f.id in frame.columns else None
    if id_col is None and f.kind != "ofds":
        raise SchemaError(
            f"{layer}: id column {f.id!r} not found in {f.path}"
            f"{did_you_mean(f.id, frame.columns)}; the file has "
            f"{list(frame.columns)[:20]}"
        )
    ids = (frame[id_col].astype("string") if id_col
           else pd.Series([f"{layer}:{i + 1}" for i in range(len(frame))], index=frame.index))
    status = status_classes(frame, f, layer)
    operational = status == "operational"
    role = _asset_roles(frame, f.kind)
    missing = frame.geometry.isna() | frame.geometry.is_empty
    wrong = role.isna() & ~missing
    expected = {"access_points": "Point", "routes": "LineString"}.get(f.kind, "Point/LineString")
    issues = concat_issues([
        read_issues.assign(dropped=False),
        row_issues(missing, layer=layer, reason="missing_geometry", codes=ids, dropped=True,
                   message="fibre asset has no geometry; left out"),
        row_issues(wrong, layer=layer, reason="wrong_geometry_type", codes=ids, dropped=True,
                   message=f"geometry is not a {expected}; left out"),
        _unknown_status_issues(frame, f, layer, (status == "unknown") & ~missing & ~wrong, ids),
    ])
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
    record = input_record(layer, f.path, len(frame), issues,
                          extra={"not_operational": not_op}, digest=io.content_hash(frame))
    return Loaded(frame=out, issues=issues, record=record)


def preset_columns(s: SpeedConfig, *, name: str) -> SpeedConfig:
    """``s`` with the columns its preset names spelt as its file spells them (dots or
    underscores, :func:`ruralcov.presets.resolve_columns`), so that every engine reads them.

    Parameters
    ----------
    s
        A ``[[speed]]`` block.
    name
        Its layer (``speed``, ``capability[0]``), for messages.

    Returns
    -------
    SpeedConfig
        ``s`` itself without a preset, or when the file's header is not read apart.
    """
    if not s.preset:
        return s
    columns = io.header(s.path, encoding=s.encoding, name=name)
    if columns is None:
        return s
    return dataclasses.replace(s, **presets.resolve_columns(s, columns, layer=name))


def load_speed_tests(s: SpeedConfig) -> Loaded:
    """Speed tests with numeric measures; unusable rows dropped with a reason.

    The whole file is read at once (:func:`ruralcov.io.read_layer`) and checked by the row
    rules of :mod:`ruralcov.checks`, the ones the stream applies batch by batch.

    Parameters
    ----------
    s
        The ``[speed]`` section.

    Returns
    -------
    Loaded
        The usable tests (``row``: the source row, so that the join can report points outside
        every village against it; ``download_mbps``, ``upload_mbps``, ``latency_ms``,
        ``device_id`` and, with device-day sampling, ``day``, ``day_ok``, ``skey``), every
        finding but those of the join, and the record. ``frame.attrs["has_device"]`` says
        whether the file has the device column.

    Raises
    ------
    InputError, SchemaError, CRSError, UnitError
        For what stops a run (:mod:`ruralcov.errors`).
    """
    layer = "speed"
    frame, read_issues = io.read_layer(s.path, layer=s.layer, crs=s.crs, encoding=s.encoding,
                                       lon=s.lon, lat=s.lat, name=layer)
    # The file's own columns, as every engine names them (the frame adds the geometry).
    columns = [c for c in frame.columns if c != frame.geometry.name]
    checks.require_column(s, "download", columns)
    checks.require_sampling_columns(s, columns, s.path)
    status, skip = _period_status(frame, s, columns)
    rows = np.arange(1, len(frame) + 1)
    # Other periods' rows are not read, and a row without a period is dropped for that alone.
    gone = rows[skip | (status == checks.NO_PERIOD)]
    read_issues = read_issues[~read_issues["row"].isin(gone)]
    download = units.to_mbps(_numbers(frame[s.download]), s.download_unit)
    checks.download_status(status, download)
    units.check_plausible(checks.tally(download, status), column=s.download, path=s.path,
                          unit=s.download_unit)
    ok = status == checks.OK
    duplicate = np.zeros(len(frame), dtype=bool)
    attrs = pd.DataFrame(frame.drop(columns=frame.geometry.name))
    h1, h2 = checks.row_hashes(checks.text_table(attrs, frame.geometry.values), ok)
    duplicate[ok] = checks.first_copies(h1, h2)
    out, found = _speed_columns(frame, s, download, status)
    reported = read_issues_mask(read_issues, len(frame)).to_numpy()
    found.update({key: rows[status == code] for code, key in checks.STATUS_KEYS.items()
                  if key in ("absurd", "bad_download", "negative", "no_period")})
    found.update(duplicate=rows[duplicate],
                 no_location=rows[(status == checks.MISSING) & ~reported])
    issues = checks.speed_issues(found, speed=s, present=frame.columns, path=s.path,
                                 reader=read_issues.assign(dropped=read_issues["row"].notna()))
    usable = ok & ~duplicate
    gdf = gpd.GeoDataFrame(out[usable], geometry=frame.geometry[usable], crs="EPSG:4326")
    gdf.attrs["has_device"] = bool(s.device and s.device in frame.columns)
    return Loaded(frame=gdf, issues=issues,
                  record=input_record(layer, s.path, len(frame) - int(skip.sum()), issues,
                                      digest=io.content_hash(frame)))


#: Status of the rows a run of one period does not read (other periods' rows).
_NOT_READ = -1


def _period_status(frame: gpd.GeoDataFrame, s: SpeedConfig, columns: list[str]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Each row's status before the download rules (no location, no period, or usable; rows
    of other periods :data:`_NOT_READ`) and the rows of other periods (:mod:`ruralcov.periods`)."""
    no_geom = (frame.geometry.isna() | frame.geometry.is_empty).to_numpy()
    status = np.where(no_geom, np.int8(checks.MISSING), np.int8(checks.OK))
    skip = np.zeros(len(frame), dtype=bool)
    if s.period_filter:
        checks.require_column(s, "period", columns)
        take, missing = period_rows(frame[s.period], s)
        skip = ~take
        status[skip] = _NOT_READ
        status[np.flatnonzero(take)[missing]] = checks.NO_PERIOD
    return status, skip


def _numbers(values: pd.Series) -> np.ndarray:
    """A measure column as float64 (anything not a number is NaN)."""
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _speed_columns(frame: gpd.GeoDataFrame, s: SpeedConfig, download: np.ndarray,
                   status: np.ndarray) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The standard columns of every row, and the rows the measure and time rules found."""
    rows = np.arange(1, len(frame) + 1)
    out = pd.DataFrame({"row": rows, "download_mbps": download})
    found: dict[str, np.ndarray] = {}
    for key, col in (("upload", s.upload), ("latency", s.latency)):
        name = "upload_mbps" if key == "upload" else "latency_ms"
        out[name] = np.nan
        if col and col in frame.columns:
            values = _numbers(frame[col])
            if key == "upload":  # latency is milliseconds whatever download_unit says
                values = units.to_mbps(values, s.download_unit)
            out[name], neg = checks.measure_values(values, status)
            found[f"neg_{key}"] = rows[neg]
    has_device = bool(s.device and s.device in frame.columns)
    out["device_id"] = frame[s.device].astype(object) if has_device else None
    if s.time_column:
        out["day"], out["day_ok"], out["skey"] = checks.time_keys(
            frame[s.time_column], s, download, out["upload_mbps"].to_numpy(),
            out["latency_ms"].to_numpy())
        checked = status == checks.OK
        day_ok = out["day_ok"].to_numpy()
        checks.check_times(int((day_ok & checked).sum()), int((~day_ok & checked).sum()),
                           speed=s)
        found["bad_time"] = rows[~day_ok & checked]
    return out, found


def read_issues_mask(read_issues: pd.DataFrame, n: int) -> pd.Series:
    """True for rows the reader already reported (so they are not reported twice).

    Parameters
    ----------
    read_issues
        The reader's issues (:func:`ruralcov.io.read_layer`).
    n
        Rows of the file.

    Returns
    -------
    pandas.Series
        One boolean per row, in row order.
    """
    mask = np.zeros(n, dtype=bool)
    rows = read_issues["row"].dropna().to_numpy(dtype=np.int64)
    mask[rows[(rows >= 1) & (rows <= n)] - 1] = True
    return pd.Series(mask)


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
