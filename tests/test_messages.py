"""Messages a user acts on: every column option names the closest column of the file."""

from __future__ import annotations

import tomllib

import pandas as pd
import pytest
import tomli_w

from ruralcov import analyse, load_config
from ruralcov.errors import RuralcovError
from worlds import write_north_world

#: (dotted config key, the column it names in the north world, a misspelling of it)
REQUIRED_COLUMNS = [
    ("villages.code", "code", "cdoe"),
    ("villages.name", "name", "nmae"),
    ("villages.kind", "kind", "kinds"),
    ("villages.levels.township", "township", "townshp"),
    ("boundaries.code", "vcode", "v_code"),
    ("fibre.0.id", "asset_id", "assetid"),
    ("fibre.0.status", "status", "statsu"),
    ("fibre.1.id", "route_id", "routeid"),
    ("fibre.2.code", "village_code", "villagecode"),
    ("fibre.2.value", "has_fibre", "hasfibre"),
    ("speed.lon", "lon", "lng"),
    ("speed.lat", "lat", "lati"),
    ("speed.download", "down", "dwn"),
]
#: Optional columns: a misspelling is an info issue that still names the close column.
OPTIONAL_COLUMNS = [
    ("speed.upload", "up", "upp"),
    ("speed.latency", "ping", "pnig"),
    ("speed.device", "device", "devise"),
]


def _set(cfg, dotted: str, value: object) -> None:
    raw = tomllib.loads(cfg.read_text(encoding="utf-8"))
    *parents, key = dotted.split(".")
    node = raw
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    node[key] = value
    cfg.write_text(tomli_w.dumps(raw), encoding="utf-8")


@pytest.mark.parametrize(("key", "column", "typo"), REQUIRED_COLUMNS,
                         ids=[k for k, _, _ in REQUIRED_COLUMNS])
def test_a_misspelt_column_names_the_closest(tmp_path, key, column, typo):
    cfg = write_north_world(tmp_path / "in")
    _set(cfg, key, typo)
    with pytest.raises(RuralcovError) as err:
        analyse(load_config(cfg))
    message = str(err.value)
    assert typo in message and f"did you mean {column!r}?" in message, message


@pytest.mark.parametrize(("key", "column", "typo"), OPTIONAL_COLUMNS,
                         ids=[k for k, _, _ in OPTIONAL_COLUMNS])
@pytest.mark.parametrize("fmt", ["csv", "gpkg"])
def test_a_misspelt_optional_column_is_reported_with_the_closest(tmp_path, key, column, typo,
                                                                 fmt):
    cfg = write_north_world(tmp_path / "in")
    if fmt == "gpkg":  # the whole-file loader instead of the stream
        import geopandas as gpd

        frame = pd.read_csv(cfg.parent / "tests.csv")
        gpd.GeoDataFrame(frame.drop(columns=["lon", "lat"]),
                         geometry=gpd.points_from_xy(frame["lon"], frame["lat"]),
                         crs="EPSG:4326").to_file(cfg.parent / "tests.gpkg", layer="tests")
        _set(cfg, "speed.path", "tests.gpkg")
    _set(cfg, key, typo)
    issues = analyse(load_config(cfg)).issues
    absent = issues[issues["reason"] == "column_absent"]["message"].tolist()
    assert any(typo in m and f"did you mean {column!r}?" in m for m in absent), absent


@pytest.mark.parametrize(("index", "key", "column", "typo"),
                         [(1, "download", "down", "donw"), (1, "code", "village_code", "vilage")])
def test_a_misspelt_capability_column_names_the_closest(tmp_path, index, key, column, typo):
    from test_capability import write_world

    cfg = write_world(tmp_path / "five")
    _set(cfg, f"speed.{index}.{key}", typo)
    with pytest.raises(RuralcovError) as err:
        analyse(load_config(cfg))
    assert f"did you mean {column!r}?" in str(err.value), str(err.value)
