"""Tests for ruralcov.io: every input format read back into EPSG:4326 with its issues."""

from __future__ import annotations

import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from shapely.geometry import MultiPolygon, Point, Polygon

from ruralcov.errors import CRSError, InputError, SchemaError
from ruralcov.io import read_layer, read_table, sha256_file

# Published pair (wandergis/coordtransform, test/app.js): WGS84 (116.404, 39.915) is
# GCJ-02 (116.41024449916938, 39.91640428150164).
WGS84_POINT = (116.404, 39.915)
GCJ02_POINT = (116.41024449916938, 39.91640428150164)


def _square(x: float, y: float, d: float = 0.01) -> Polygon:
    return Polygon([(x, y), (x + d, y), (x + d, y + d), (x, y + d)])


@pytest.fixture
def world() -> gpd.GeoDataFrame:
    """Three villages near Taiyuan: two squares sharing an edge and a MultiPolygon."""
    return gpd.GeoDataFrame(
        {
            "code": ["140105001001", "140105001002", "140105001203"],
            "name": ["东村村委会", "西村村民委员会", "南街居委会"],
            "households": [120, 85, 300],
        },
        geometry=[
            _square(112.50, 37.80),
            _square(112.51, 37.80),
            MultiPolygon([_square(112.60, 37.90), _square(112.62, 37.90)]),
        ],
        crs="EPSG:4326",
    )


def _assert_same(got: gpd.GeoDataFrame, want: gpd.GeoDataFrame) -> None:
    assert got.crs.to_epsg() == 4326
    assert list(got.index) == list(range(len(want)))
    assert got.geometry.name == "geometry"
    assert list(got["code"]) == list(want["code"])
    assert list(got["name"]) == list(want["name"])
    # Writers may promote Polygon to MultiPolygon in a mixed layer; the shape must not change.
    for a, b in zip(got.geometry, want.geometry, strict=True):
        assert shapely.hausdorff_distance(a, b) < 1e-9


@pytest.mark.parametrize(
    ("filename", "driver"),
    [
        ("villages.gpkg", "GPKG"),
        ("villages.shp", "ESRI Shapefile"),
        ("villages.geojson", "GeoJSON"),
        ("villages.json", "GeoJSON"),
        ("villages.fgb", "FlatGeobuf"),
    ],
)
def test_vector_formats_round_trip(tmp_path, world, filename, driver):
    path = tmp_path / filename
    # FlatGeobuf's spatial index reorders features on write; without it the file keeps ours.
    options = {"SPATIAL_INDEX": "NO"} if driver == "FlatGeobuf" else {}
    world.to_file(path, driver=driver, engine="pyogrio", layer_options=options)
    frame, issues = read_layer(path, name="villages")
    _assert_same(frame, world)
    assert list(frame["households"].astype(int)) == [120, 85, 300]
    assert issues.empty


@pytest.mark.parametrize("suffix", [".parquet", ".geoparquet"])
def test_geoparquet_round_trip_with_column_projection(tmp_path, world, suffix):
    path = tmp_path / f"villages{suffix}"
    world.to_parquet(path)
    frame, issues = read_layer(path, columns=["code", "name"], name="villages")
    _assert_same(frame, world)
    assert list(frame.columns) == ["code", "name", "geometry"]
    assert issues.empty


def test_zipped_shapefile_in_a_subfolder(tmp_path, world):
    shp_dir = tmp_path / "shp"
    shp_dir.mkdir()
    world.to_file(shp_dir / "villages.shp", engine="pyogrio")
    archive = tmp_path / "villages.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for part in sorted(shp_dir.iterdir()):
            zf.write(part, f"export/{part.name}")
    frame, issues = read_layer(archive, name="villages")
    _assert_same(frame, world)
    assert issues.empty


def test_folder_of_parquet_parts_in_sorted_order(tmp_path):
    folder = tmp_path / "speed"
    folder.mkdir()
    parts = {
        "part-001.parquet": pd.DataFrame(
            {"lon": [112.5, 112.6], "lat": [37.8, 37.9], "mbps": [10.0, 20.0]}
        ),
        "part-000.parquet": pd.DataFrame({"lon": [112.1], "lat": [37.1], "mbps": [5.0]}),
    }
    for fname, df in parts.items():
        df.to_parquet(folder / fname)
    (folder / "_SUCCESS").write_text("", encoding="utf-8")
    frame, issues = read_layer(folder, crs="EPSG:4326", columns=["mbps"], name="speed")
    assert list(frame["mbps"]) == [5.0, 10.0, 20.0]
    assert list(frame.geometry.x) == [112.1, 112.5, 112.6]
    assert list(frame.columns) == ["mbps", "geometry"]
    assert issues.empty
    # Geo parts work the same way.
    geo = tmp_path / "geo"
    geo.mkdir()
    for i, (x, y) in enumerate([(112.0, 37.0), (113.0, 38.0)]):
        gpd.GeoDataFrame({"i": [i]}, geometry=[Point(x, y)], crs=4326).to_parquet(
            geo / f"p{i}.parquet"
        )
    frame, _ = read_layer(geo, name="speed")
    assert list(frame["i"]) == [0, 1]
    assert frame.crs.to_epsg() == 4326


def test_sha256_file_and_folder(tmp_path):
    a = tmp_path / "a.csv"
    a.write_text("x\n1\n", encoding="utf-8")
    assert sha256_file(a) == sha256_file(str(a))
    assert len(sha256_file(a)) == 64
    folder = tmp_path / "parts"
    folder.mkdir()
    pd.DataFrame({"x": [1]}).to_parquet(folder / "p0.parquet")
    before = sha256_file(folder)
    pd.DataFrame({"x": [2]}).to_parquet(folder / "p1.parquet")
    assert sha256_file(folder) != before
    with pytest.raises(InputError, match="not found"):
        sha256_file(tmp_path / "missing.csv")


def test_sha256_of_a_folder_is_its_parts_by_name(tmp_path):
    """A file hashes as ``sha256sum`` would; a folder of Parquet parts as one line per part
    (name, NUL, the part's hash), in name order, other files left out: what the manifest
    records for a folder input, reproduced here with hashlib alone."""
    import hashlib

    folder = tmp_path / "parts"
    folder.mkdir()
    for name, x in (("b.parquet", 2), ("a.parquet", 1)):
        pd.DataFrame({"x": [x]}).to_parquet(folder / name)
    (folder / "notes.txt").write_text("not a part", encoding="utf-8")
    (folder / "sub").mkdir()

    def plain(path):
        return hashlib.sha256(path.read_bytes()).hexdigest()

    lines = "".join(f"{n}\0{plain(folder / n)}\n" for n in ("a.parquet", "b.parquet"))
    assert sha256_file(folder) == hashlib.sha256(lines.encode()).hexdigest()
    assert sha256_file(folder / "a.parquet") == plain(folder / "a.parquet")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="holds no .parquet files"):
        sha256_file(empty)


CSV_TEXT = (
    "code,name,lon,lat\n"
    "140105001001,东村村委会,112.505,37.805\n"
    "140105001002,西村村民委员会,112.515,37.805\n"
    "140105001203,南街居委会,112.61,37.91\n"
)


@pytest.mark.parametrize(
    ("encoding_written", "encoding_read"),
    [("utf-8", "utf-8"), ("utf-8-sig", "utf-8"), ("gb18030", "gb18030"), ("gbk", "gbk")],
)
def test_csv_encodings_read_identically(tmp_path, encoding_written, encoding_read):
    path = tmp_path / "villages.csv"
    path.write_bytes(CSV_TEXT.encode(encoding_written))
    frame, issues = read_layer(path, crs="EPSG:4326", encoding=encoding_read, name="villages")
    assert list(frame.columns) == ["code", "name", "lon", "lat", "geometry"]
    assert list(frame["code"]) == ["140105001001", "140105001002", "140105001203"]
    assert list(frame["name"]) == ["东村村委会", "西村村民委员会", "南街居委会"]
    assert list(frame.geometry.x) == [112.505, 112.515, 112.61]
    assert issues.empty


def test_csv_codes_stay_strings(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("code,name,x,y\n0351,NA,112.5,37.8\n", encoding="utf-8")
    frame, _ = read_layer(path, crs="EPSG:4326", name="villages")
    assert frame["code"].iloc[0] == "0351"
    assert frame["name"].iloc[0] == "NA"  # a real value, not missing


def test_gb18030_read_as_utf8_gives_hint(tmp_path):
    path = tmp_path / "villages.csv"
    path.write_bytes(CSV_TEXT.encode("gb18030"))
    with pytest.raises(InputError, match='not valid utf-8.*encoding = "gb18030"'):
        read_layer(path, crs="EPSG:4326", name="villages")


def test_utf8_read_as_gb18030_is_refused(tmp_path):
    path = tmp_path / "villages.csv"
    path.write_bytes(CSV_TEXT.encode("utf-8"))
    with pytest.raises(InputError, match='looks like UTF-8.*encoding = "utf-8"'):
        read_layer(path, crs="EPSG:4326", encoding="gb18030", name="villages")


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"villages: file .*nope\.gpkg not found"):
        read_layer(tmp_path / "nope.gpkg", name="villages")


def test_unknown_format_lists_supported(tmp_path):
    path = tmp_path / "villages.dwg"
    path.write_bytes(b"\x00\x01")
    with pytest.raises(InputError, match="supported formats: GeoPackage"):
        read_layer(path, name="villages")
    bad = tmp_path / "broken.gpkg"
    bad.write_bytes(b"not a geopackage")
    with pytest.raises(InputError, match="cannot read") as info:
        read_layer(bad, name="villages")
    assert info.value.__cause__ is not None


def test_missing_columns_all_listed(tmp_path, world):
    path = tmp_path / "villages.gpkg"
    world.to_file(path, engine="pyogrio")
    with pytest.raises(SchemaError) as info:
        read_layer(path, columns=["code", "village_code", "kind"], name="villages")
    msg = str(info.value)
    assert "['village_code', 'kind']" in msg
    assert "the file has ['code', 'name', 'households']" in msg
    csv = tmp_path / "t.csv"
    csv.write_text(CSV_TEXT, encoding="utf-8")
    with pytest.raises(SchemaError, match=r"\['tcode', 'ccode'\]"):
        read_layer(csv, crs="EPSG:4326", columns=["code", "tcode", "ccode"], name="villages")


def test_no_crs_is_crs_error_with_hint(tmp_path):
    path = tmp_path / "villages.csv"
    path.write_text(CSV_TEXT, encoding="utf-8")
    with pytest.raises(CRSError, match=r'has no CRS; set crs = "EPSG:4326" in the \[fibre\]'):
        read_layer(path, name="fibre[0]")


def test_csv_in_gcj02_comes_back_in_wgs84(tmp_path):
    path = tmp_path / "aps.csv"
    path.write_text(f"id,lng,lat\nA1,{GCJ02_POINT[0]!r},{GCJ02_POINT[1]!r}\n", encoding="utf-8")
    frame, issues = read_layer(path, crs="GCJ-02", name="fibre[0]")
    assert frame.crs.to_epsg() == 4326
    assert frame.geometry.iloc[0].x == pytest.approx(WGS84_POINT[0], abs=1e-7)
    assert frame.geometry.iloc[0].y == pytest.approx(WGS84_POINT[1], abs=1e-7)
    assert issues.empty


def test_geojson_declaring_wgs84_but_holding_gcj02(tmp_path):
    path = tmp_path / "aps.geojson"
    gpd.GeoDataFrame({"id": ["A1"]}, geometry=[Point(GCJ02_POINT)], crs=4326).to_file(path)
    frame, _ = read_layer(path, crs="gcj02", name="fibre[0]")
    assert frame.geometry.iloc[0].x == pytest.approx(WGS84_POINT[0], abs=1e-7)


def test_file_crs_wins_over_setting(tmp_path, world):
    path = tmp_path / "villages.gpkg"
    world.to_crs(3857).to_file(path, engine="pyogrio")
    frame, issues = read_layer(path, crs="EPSG:32649", name="villages")
    _assert_geoms_close(frame, world)
    assert list(issues["reason"]) == ["crs_setting_ignored"]
    assert list(issues["severity"]) == ["info"]


def _assert_geoms_close(got: gpd.GeoDataFrame, want: gpd.GeoDataFrame) -> None:
    assert got.crs.to_epsg() == 4326
    for a, b in zip(got.geometry, want.geometry, strict=True):
        assert shapely.hausdorff_distance(a, b) < 1e-7


def test_geopackage_in_web_mercator_comes_back_in_place(tmp_path, world):
    path = tmp_path / "villages.gpkg"
    world.to_crs(3857).to_file(path, engine="pyogrio")
    frame, issues = read_layer(path, name="villages")
    _assert_geoms_close(frame, world)
    assert issues.empty


def test_projected_coordinates_declared_as_degrees(tmp_path):
    path = tmp_path / "aps.csv"
    path.write_text("id,x,y\nA,500000,4180000\nB,510000,4190000\n", encoding="utf-8")
    with pytest.raises(CRSError, match=r"2 of 2 geometries.*aps\.csv.*projected"):
        read_layer(path, crs="EPSG:4326", name="fibre[0]")


def test_swapped_lon_lat_is_named(tmp_path):
    path = tmp_path / "aps.csv"
    path.write_text("id,lon,lat\nA,37.8,112.5\nB,37.9,112.6\n", encoding="utf-8")
    with pytest.raises(CRSError, match="swapped"):
        read_layer(path, crs="EPSG:4326", name="fibre[0]")


def test_few_out_of_range_rows_become_issues(tmp_path):
    path = tmp_path / "speed.csv"
    rows = "\n".join(f"{i},112.{i},37.{i}" for i in range(1, 6))
    path.write_text(f"id,lon,lat\n{rows}\n6,512.0,37.0\n", encoding="utf-8")
    frame, issues = read_layer(path, crs="EPSG:4326", name="speed")
    assert len(frame) == 6
    assert frame.geometry.iloc[5] is None
    assert list(issues["reason"]) == ["coordinates_out_of_range"]
    assert list(issues["row"]) == [6]


def test_bad_and_missing_wkt_rows(tmp_path):
    path = tmp_path / "villages.csv"
    path.write_text(
        "code,WKT\n"
        'a,"POLYGON ((112 37, 112.1 37, 112.1 37.1, 112 37))"\n'
        "b,POLYGON ((oops\n"
        "c,\n"
        "d,POINT (112.5 37.5)\n",
        encoding="utf-8",
    )
    frame, issues = read_layer(path, crs="EPSG:4326", name="villages")
    assert list(frame["code"]) == ["a", "b", "c", "d"]
    assert frame.geometry.isna().tolist() == [False, True, True, False]
    assert issues[["row", "reason"]].values.tolist() == [
        [3, "missing_geometry"],
        [2, "bad_geometry"],
    ]
    assert set(issues["severity"]) == {"warning"}
    assert not issues["dropped"].any()
    assert set(issues["layer"]) == {"villages"}


def test_missing_and_non_numeric_coordinates(tmp_path):
    path = tmp_path / "speed.csv"
    path.write_text(
        "lon,lat,v\n112.5,37.8,1\n,37.8,2\nabc,37.8,3\n112.6,37.9,4\n", encoding="utf-8"
    )
    frame, issues = read_layer(path, crs="EPSG:4326", name="speed")
    assert frame.geometry.isna().tolist() == [False, True, True, False]
    assert issues[["row", "reason"]].values.tolist() == [
        [2, "missing_geometry"],
        [3, "bad_geometry"],
    ]


def test_geometry_modes(tmp_path):
    path = tmp_path / "register.csv"
    path.write_text("code,name\n140105001001,东村村委会\n", encoding="utf-8")
    with pytest.raises(SchemaError, match=r"no geometry columns.*\['code', 'name'\].*lon = "):
        read_layer(path, name="villages")
    frame, issues = read_layer(path, geometry="optional", name="villages")
    assert frame.geometry.isna().all() and frame.crs.to_epsg() == 4326 and issues.empty
    frame, _ = read_layer(path, geometry="none", name="villages")
    assert list(frame["code"]) == ["140105001001"]
    with pytest.raises(ValueError, match="expected to be in"):
        read_layer(path, geometry="maybe")


def test_explicit_lon_lat_and_plain_parquet(tmp_path):
    path = tmp_path / "speed.parquet"
    table = pa.table({"E": [112.5, None], "N": [37.8, 37.9], "mbps": [30.0, 40.0]})
    pq.write_table(table, path)
    frame, issues = read_layer(path, lon="E", lat="N", crs="EPSG:4326", name="speed")
    assert frame.geometry.iloc[0] == Point(112.5, 37.8)
    assert frame.geometry.iloc[1] is None
    assert list(issues["row"]) == [2]
    with pytest.raises(SchemaError, match=r"\['lng'\]"):
        read_layer(path, lon="lng", lat="N", crs="EPSG:4326", name="speed")


def test_multi_layer_geopackage_needs_layer(tmp_path, world):
    path = tmp_path / "all.gpkg"
    world.to_file(path, layer="villages", engine="pyogrio")
    world.iloc[:1].to_file(path, layer="towns", engine="pyogrio")
    with pytest.raises(InputError, match="2 layers"):
        read_layer(path, name="villages")
    frame, _ = read_layer(path, layer="towns", name="villages")
    assert len(frame) == 1
    with pytest.raises(InputError, match="no layer 'roads'"):
        read_layer(path, layer="roads", name="villages")


def test_speed_many_rows_vectorised(tmp_path):
    n = 200_000
    rng = np.random.default_rng(1)
    path = tmp_path / "speed.csv"
    pd.DataFrame(
        {"lon": rng.uniform(110.2, 114.6, n).round(6), "lat": rng.uniform(34.6, 40.7, n).round(6)}
    ).to_csv(path, index=False, encoding="utf-8")
    frame, issues = read_layer(path, crs="EPSG:4326", name="speed")
    assert len(frame) == n and issues.empty


def test_read_table_formats(tmp_path):
    csv = tmp_path / "names.csv"
    csv.write_bytes("code,name\n1401,太原市\n".encode("utf-8-sig"))
    assert read_table(csv).to_dict("records") == [{"code": "1401", "name": "太原市"}]
    xlsx = tmp_path / "names.xlsx"
    pd.DataFrame({"code": ["1401"], "name": ["太原市"]}).to_excel(xlsx, index=False)
    assert read_table(xlsx, columns=["name"]).to_dict("records") == [{"name": "太原市"}]
    pq_path = tmp_path / "names.parquet"
    pd.DataFrame({"code": ["1401"], "name": ["太原市"]}).to_parquet(pq_path)
    assert read_table(pq_path, columns=["code"])["code"].tolist() == ["1401"]
    with pytest.raises(SchemaError, match=r"\['x', 'y'\]"):
        read_table(csv, columns=["x", "y"], name="names")
    with pytest.raises(InputError, match="not found"):
        read_table(tmp_path / "none.csv")
    with pytest.raises(InputError, match="supported tables"):
        read_table(Path(__file__))


def test_plain_parquet_with_wkb_geometry_column(tmp_path):
    path = tmp_path / "aps.parquet"
    wkb = [shapely.to_wkb(Point(112.5, 37.8)), None]
    pq.write_table(pa.table({"id": ["A", "B"], "geometry": pa.array(wkb, pa.binary())}), path)
    frame, issues = read_layer(path, crs="EPSG:4326", name="fibre[0]")
    assert list(frame.columns) == ["id", "geometry"]
    assert frame.geometry.iloc[0] == Point(112.5, 37.8)
    assert issues[["row", "reason"]].values.tolist() == [[2, "missing_geometry"]]


def test_vector_rows_without_geometry_are_reported(tmp_path, world):
    path = tmp_path / "villages.gpkg"
    holes = world.copy()
    holes.loc[1, "geometry"] = None
    holes.to_file(path, engine="pyogrio")
    frame, issues = read_layer(path, name="villages")
    assert len(frame) == 3 and frame.geometry.iloc[1] is None
    assert issues[["row", "reason"]].values.tolist() == [[2, "missing_geometry"]]


def test_a_column_named_twice_in_an_excel_header(tmp_path):
    path = tmp_path / "claims.xlsx"
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["village_code", "name", " village_code"])  # the same name, one stray blank
    sheet.append(["140105001001", "东村", "140105001002"])
    book.save(path)
    with pytest.raises(SchemaError, match=r"claims.xlsx has the column 'village_code' twice "
                                          r"in its header \(columns 1 and 3\)"):
        read_table(path, name="claimed list")


def test_blank_header_names_are_not_duplicates(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("code,name,,\n1,a,,\n", encoding="utf-8")  # trailing empty columns
    assert list(read_table(path)["code"]) == ["1"]


def test_read_table_excel_dates_and_formulas_without_values(tmp_path):
    """Excel is read as text like a CSV, except that date cells are dates (not
    ``2026-05-02 00:00:00``), and a formula without a computed value (openpyxl, like any
    script, writes the formula only) is never read as an empty cell."""
    import datetime

    import openpyxl

    book = openpyxl.Workbook()
    ws = book.active
    ws.title = "Blad1"
    ws.append(["code", "when", "n"])
    ws.append(["0351", datetime.datetime(2026, 5, 2), 7])
    ws.append(["0352", datetime.datetime(2026, 5, 2, 14, 30), 1.5])
    ws.append(["0353", datetime.date(2026, 1, 31), None])
    ws.append(["0354", None, "=B2+1"])  # the last rows: only formulas without values
    ws.append(['="03"&"55"', None, None])
    path = tmp_path / "t.xlsx"
    book.save(path)
    with pytest.raises(InputError, match=r"formulas without a computed value in Blad1!C5, "
                                         r"Blad1!A6 \(.*Excel or WPS"):
        read_table(path, name="names")
    frame = read_table(path, name="names", uncached="report")
    assert frame["code"].tolist()[:4] == ["0351", "0352", "0353", "0354"]
    assert pd.isna(frame["code"].iat[4])
    assert frame["when"].tolist()[:3] == ["2026-05-02", "2026-05-02 14:30:00", "2026-01-31"]
    assert frame["n"].tolist()[:2] == ["7", "1.5"]
    assert frame.attrs["uncached_formulas"] == {3: {"n": "Blad1!C5"}, 4: {"code": "Blad1!A6"}}
    ws["A1"] = "=UPPER(\"code\")"  # a header without a value: not even a column name
    book.save(path)
    with pytest.raises(InputError, match=r"Blad1!A1"):
        read_table(path, name="names", uncached="report")
