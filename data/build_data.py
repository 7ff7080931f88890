"""Rebuild the real layers of the embedded demo data from the shared source folder.

Usage::

    python data/build_data.py --shared /path/to/shared/data

``--shared`` is the folder holding ``china_register/`` and ``shanxi_boundaries/`` (see
README.md in this folder for where those come from). The script writes next to itself:

- the Shanxi register tables, copied byte for byte (``shanxi_*.csv``), a one-row
  ``shanxi_province.csv`` taken from ``provinces.csv``, and ``LICENSE-china-division.txt``;
- the national register of the national demo, copied byte for byte (``china_*_all.csv*``,
  and ``provinces.csv`` as ``china_provinces.csv``);
- ``shanxi_counties.geojson``: the 117 county outlines, simplified as one coverage (shared
  edges stay shared) in UTM 49N, rounded to 5 decimals (about 1 m), repaired with
  ``make_valid``, with properties ``code`` (6-digit county code) and ``name``.

The synthetic layers (village polygons, fibre, speed tests) are not stored here: they are
generated at run time by :func:`ruralcov.demo.build_demo_inputs`.

The script is deterministic: running it twice writes identical files. It is not run by the
test suite (the tests must never read the shared folder).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pyproj
import shapely

HERE = Path(__file__).resolve().parent
METRIC_CRS = "EPSG:32649"  # UTM 49N covers Shanxi (110.2–114.6° E)
SIMPLIFY_TOLERANCE_M = 75.0
DECIMALS = 5
PROVINCE_CODE = "14"

REGISTER_FILES = (
    "shanxi_villages.csv",
    "shanxi_townships.csv",
    "shanxi_counties.csv",
    "shanxi_cities.csv",
    "LICENSE-china-division.txt",
    # the national demo (ruralcov.national)
    "china_villages_all.csv.gz",
    "china_townships_all.csv.gz",
    "china_counties_all.csv",
    "china_cities_all.csv",
)


def copy_register(shared: Path, out: Path) -> None:
    """Copy the register tables (Shanxi's and the nation's) and write the one-row province
    table of Shanxi.

    Parameters
    ----------
    shared
        The shared source folder (holding ``china_register/``).
    out
        The folder to write into.
    """
    src = shared / "china_register"
    for name in REGISTER_FILES:
        shutil.copyfile(src / name, out / name)
    shutil.copyfile(src / "provinces.csv", out / "china_provinces.csv")
    with open(src / "provinces.csv", encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["code"] == PROVINCE_CODE]
    if len(rows) != 1:
        raise SystemExit(f"provinces.csv: expected one row with code {PROVINCE_CODE}")
    with open(out / "shanxi_province.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["code", "name"])
        writer.writerow([rows[0]["code"], rows[0]["name"]])


def simplify_outlines(shared: Path, out: Path) -> None:
    """Write ``shanxi_counties.geojson``: the county outlines simplified as one coverage.

    The outlines are simplified in metres (:data:`SIMPLIFY_TOLERANCE_M`), so that the file
    stays small while neighbouring counties keep one shared edge.

    Parameters
    ----------
    shared, out
        The shared source folder (holding ``shanxi_boundaries/``), the folder to write into.
    """
    src = shared / "shanxi_boundaries" / "shanxi_counties.geojson"
    with open(src, encoding="utf-8") as f:
        fc = json.load(f)
    features = sorted(fc["features"], key=lambda ft: ft["properties"]["gb"])
    geoms = shapely.from_geojson([json.dumps(ft["geometry"]) for ft in features])
    to_m = pyproj.Transformer.from_crs("EPSG:4326", METRIC_CRS, always_xy=True)
    to_deg = pyproj.Transformer.from_crs(METRIC_CRS, "EPSG:4326", always_xy=True)
    metric = shapely.transform(geoms, lambda c: np.column_stack(to_m.transform(c[:, 0], c[:, 1])))
    # Simplify as a coverage so that neighbouring counties keep one shared edge (no gaps).
    simple = shapely.coverage_simplify(metric, SIMPLIFY_TOLERANCE_M)
    back = shapely.transform(
        simple, lambda c: np.round(np.column_stack(to_deg.transform(c[:, 0], c[:, 1])), DECIMALS)
    )
    back = shapely.make_valid(back)
    out_features = []
    for ft, geom in zip(features, back, strict=True):
        gb = ft["properties"]["gb"]
        if not gb.startswith("156"):
            raise SystemExit(f"unexpected gb code {gb!r}")
        polys = [p for p in shapely.get_parts(geom) if p.geom_type == "Polygon"]
        geom = polys[0] if len(polys) == 1 else shapely.MultiPolygon(polys)
        out_features.append(
            {
                "type": "Feature",
                "properties": {"code": gb[3:], "name": ft["properties"]["name"]},
                "geometry": json.loads(shapely.to_geojson(geom)),
            }
        )
    text = json.dumps(
        {"type": "FeatureCollection", "features": out_features},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    (out / "shanxi_counties.geojson").write_text(text + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """The command line of the module docstring.

    Parameters
    ----------
    argv
        The arguments (None: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status, 0.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shared",
        type=Path,
        required=True,
        help="folder with china_register/ and shanxi_boundaries/",
    )
    parser.add_argument("--out", type=Path, default=HERE, help="where to write (default: data/)")
    args = parser.parse_args(argv)
    for sub in ("china_register", "shanxi_boundaries"):
        if not (args.shared / sub).is_dir():
            parser.error(f"--shared: {args.shared / sub} is not a folder")
    args.out.mkdir(parents=True, exist_ok=True)
    copy_register(args.shared, args.out)
    simplify_outlines(args.shared, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
