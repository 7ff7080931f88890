"""``analyse`` end to end on the hand-made north world (real files, generic register)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ruralcov import analyse, load_config
from ruralcov.schema import SUMMARY_COLUMNS, VILLAGE_COLUMNS
from worlds import EXPECTED, expected_frame, write_north_world


@pytest.fixture(scope="module")
def north(tmp_path_factory):
    path = write_north_world(tmp_path_factory.mktemp("north"))
    return analyse(load_config(path))


def test_every_register_entry_is_a_row_with_every_column(north):
    v = north.villages
    assert sorted(v["village_code"]) == sorted([*EXPECTED, "X1"])
    assert set(VILLAGE_COLUMNS) <= set(v.columns)
    assert v.crs.to_epsg() == 4326


def test_villages_match_construction(north):
    got = north.villages.set_index("village_code").loc[list(EXPECTED)]
    want = expected_frame()
    for col in want.columns:
        expected = want[col].tolist()
        actual = got[col].tolist()
        if col == "download_median_mbps":
            assert [None if pd.isna(a) else a for a in actual] == expected, col
        else:
            assert [int(a) if col in ("tests", "devices") else a for a in actual] == expected, col


def test_evidence_columns(north):
    v = north.villages.set_index("village_code")
    assert v.loc["V1", "fibre_asset_id"] == "AP-1" and v.loc["V1", "fibre_distance_m"] == 0
    assert v.loc["V2", "fibre_asset_id"] == "AP-2"
    # Placed 300 m away with a geodesic; the metric CRS distance agrees to within 1 m.
    assert v.loc["V2", "fibre_distance_m"] == pytest.approx(300, abs=1)
    assert v.loc["V3", "fibre_route_id"] == "R-1"
    assert v.loc["V3", "fibre_route_distance_m"] == pytest.approx(200, abs=1)
    assert not v.loc["V6", "has_geometry"] and v.loc["V1", "has_geometry"]
    assert v.loc["C1", "download_target_mbps"] == 100 and v.loc["V1", "download_target_mbps"] == 12
    assert bool(v.loc["V1", "meets_targets"]) and not bool(v.loc["V2", "meets_targets"])


def test_point_on_shared_boundary_goes_to_lowest_code(north):
    # V1 has 6 interior tests plus the one on the V1/V2 edge; V2 keeps its own 6.
    v = north.villages.set_index("village_code")
    assert v.loc["V1", "tests"] == 7 and v.loc["V2", "tests"] == 6


def test_summary_and_headline(north):
    county = north.summaries["county"]
    assert list(county.columns) == list(SUMMARY_COLUMNS)
    row = county.iloc[0]
    assert (row["villages"], row["fibre_villages"]) == (6, 3)
    assert row["fibre_gap_villages"] == 3  # ceil(0.98 * 6) = 6
    assert (row["speed_meets"], row["speed_below"], row["speed_insufficient"]) == (2, 1, 3)
    township = north.summaries["township"].set_index("code")
    assert township.loc["T1", "villages"] == 3 and township.loc["T2", "villages"] == 3
    assert north.headline["fibre_share"] == 0.5
    assert north.headline["communities"] == 1 and north.headline["other_units"] == 1


def test_gap_lists(north):
    assert sorted(north.gaps["no_fibre"]["village_code"]) == ["V3", "V5", "V6"]
    assert sorted(north.gaps["below_speed"]["village_code"]) == ["C1", "V3"]
    assert sorted(north.gaps["insufficient_data"]["village_code"]) == ["V2", "V5", "V6"]


def test_rows_balance_and_bad_rows_are_recorded(north):
    for rec in north.inputs:
        assert rec.rows_read == rec.rows_used + sum(rec.dropped.values()), rec.layer
    speed = next(r for r in north.inputs if r.layer == "speed")
    assert speed.rows_read == 32 and speed.rows_used == 29
    assert set(speed.dropped) == {"negative_speed", "missing_geometry", "outside_villages"}
    fibre = next(r for r in north.inputs if r.layer == "fibre[0]")
    assert fibre.dropped == {"not_operational": 1}
    reasons = set(north.issues.loc[north.issues["layer"] == "speed", "reason"])
    assert {"negative_speed", "outside_villages"} <= reasons
    outside = north.issues[north.issues["reason"] == "outside_villages"]
    assert outside["row"].tolist() == [32]


def test_result_does_not_depend_on_file_order(tmp_path):
    path = write_north_world(tmp_path)
    tests = pd.read_csv(tmp_path / "tests.csv")
    tests.iloc[np.random.default_rng(0).permutation(len(tests))].to_csv(
        tmp_path / "tests.csv", index=False
    )
    shuffled = analyse(load_config(path)).villages.set_index("village_code")
    assert shuffled.loc["V1", "tests"] == 7
    assert shuffled.loc["V1", "download_median_mbps"] == 20


def test_ofds_nodes_and_spans(tmp_path):
    """An Open Fibre Data Standard GeoJSON: nodes count as access points, spans as routes."""
    import tomllib

    import geopandas as gpd
    import tomli_w
    from shapely import LineString

    from worlds import square

    path = write_north_world(tmp_path)
    v5, v3 = square(1, 1), square(2, 0)
    below_v3 = v3.bounds[1] - 0.002  # about 220 m south of V3
    features = gpd.GeoDataFrame(
        {
            "id": ["node-1", "node-2", "span-1"],
            "featureType": ["node", "node", "span"],
            "status": ["operational", "planned", "operational"],
        },
        geometry=[
            v5.centroid,
            v3.centroid,
            LineString([(v3.bounds[0] + 0.005, below_v3), (v3.bounds[2], below_v3)]),
        ],
        crs="EPSG:4326",
    )
    features.to_file(tmp_path / "network.geojson", driver="GeoJSON")
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    raw["fibre"] = [{"path": "network.geojson", "kind": "ofds", "id": "id"}]
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    v = analyse(load_config(path)).villages.set_index("village_code")
    assert v.loc["V5", "fibre_basis"] == "access_point_inside"
    assert v.loc["V5", "fibre_asset_id"] == "node-1"
    assert not v.loc["V3", "fibre"] and v.loc["V3", "fibre_nearby"]
    assert v.loc["V3", "fibre_route_id"] == "span-1"
