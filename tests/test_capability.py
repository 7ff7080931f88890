"""Access-capability records and the five-way speed class, on a hand-made world holding every
class (and both discrepancy lists), read from real files through ``[[speed]]``."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import tomli_w
from shapely import Point, box

from mapworld import FIVE_WAY_LEGEND, GAP, NOT_COUNTED, layers, legend_from_csv, legend_of
from ruralcov import analyse, load_config, write_run
from ruralcov.capability import FIVE_WAY, counts_for_basis, five_way_class
from ruralcov.config import config_from_dict
from ruralcov.errors import RuralcovError

X0, Y0, STEP = 112.50, 37.80, 0.02  # Shanxi-like latitude

#: code -> kind, column, fibre AP inside, tests (Mbps list, one device each), capability rows
#: (download, upload, technology, provider); the class under each basis follows from these.
WORLD = {
    "V1": ("village", 0, True, [20.0] * 5, [(50, 10, "FTTH", "op-a")]),
    "V2": ("village", 1, True, [4.0] * 5, [(100, 20, "FTTH", "op-a")]),
    "V3": ("village", 2, False, [30.0] * 5, [(8, 1, "ADSL", "op-b")]),
    "V4": ("village", 3, False, [30.0] * 2, [(4, 1, "ADSL", "op-b")]),
    "V5": ("village", 4, True, [5.0] * 6, []),
    "V6": ("village", 5, False, [], []),
    "V7": ("village", 6, False, [], [(10, 1, "ADSL", "op-b"), (30, 5, "FTTH", "op-a")]),
    "C1": ("community", 7, False, [150.0] * 5, [(50, 10, "FTTH", "op-a")]),
}
EXPECTED = {  # code: (measured, capability class, five-way class, best capability Mbps)
    "V1": ("meets", "meets", "meets", 50.0),
    "V2": ("below", "meets", "capability_only", 100.0),
    "V3": ("meets", "below", "measured_only", 8.0),
    "V4": ("insufficient_data", "below", "fails", 4.0),
    "V5": ("below", "none", "fails", None),
    "V6": ("insufficient_data", "none", "insufficient_data", None),
    "V7": ("insufficient_data", "meets", "capability_only", 30.0),
    "C1": ("meets", "below", "measured_only", 50.0),  # urban target 100 Mbps
}


def write_world(folder: Path, *, basis: str | None = None, capability: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    polys = {
        c: box(X0 + col * STEP, Y0, X0 + (col + 1) * STEP, Y0 + STEP)
        for c, (_, col, *_rest) in WORLD.items()
    }
    pd.DataFrame(
        {
            "code": list(WORLD),
            "name": list(WORLD),
            "kind": [w[0] for w in WORLD.values()],
            "township": "T1",
        }
    ).to_csv(folder / "register.csv", index=False)
    gpd.GeoDataFrame({"code": list(polys)}, geometry=list(polys.values()), crs="EPSG:4326").to_file(
        folder / "villages.geojson"
    )
    aps = [c for c, w in WORLD.items() if w[2]]
    gpd.GeoDataFrame(
        {"asset_id": [f"AP-{c}" for c in aps], "status": "operational"},
        geometry=[polys[c].centroid for c in aps],
        crs="EPSG:4326",
    ).to_file(folder / "aps.geojson")
    rows = []
    for c, w in WORLD.items():
        p: Point = polys[c].centroid
        rows += [
            {"lon": p.x + 1e-4 * k, "lat": p.y, "down": s, "device": f"{c}-{k}"}
            for k, s in enumerate(w[3])
        ]
    pd.DataFrame(rows, columns=["lon", "lat", "down", "device"]).to_csv(
        folder / "tests.csv", index=False
    )
    cap = [
        {"village_code": c, "down": d, "up": u, "technology": t, "provider": pr}
        for c, w in WORLD.items()
        for d, u, t, pr in w[4]
    ]
    cap += [
        {"village_code": "NOPE", "down": 50, "up": 1, "technology": "FTTH", "provider": "x"},
        {"village_code": "V6", "down": "n/a", "up": 1, "technology": "FTTH", "provider": "x"},
    ]
    pd.DataFrame(cap).to_csv(folder / "capability.csv", index=False)
    speed = [
        {
            "path": "tests.csv",
            "kind": "tests",
            "download": "down",
            "device": "device",
            "crs": "EPSG:4326",
            "min_tests": 5,
            "min_devices": 3,
        }
    ]
    if capability:
        speed.append(
            {"path": "capability.csv", "kind": "capability", "download": "down", "upload": "up"}
        )
    config = {
        "run": {"name": "five", **({"speed_basis": basis} if basis else {})},
        "villages": {
            "path": "register.csv",
            "register": "generic",
            "levels": {"township": "township"},
            "kind": "kind",
        },
        "boundaries": {"path": "villages.geojson", "code": "code"},
        "fibre": [{"path": "aps.geojson", "kind": "access_points"}],
        "speed": speed,
    }
    path = folder / "five.toml"
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def five(tmp_path_factory):
    return analyse(load_config(write_world(tmp_path_factory.mktemp("five"))))


def test_every_village_gets_its_class_by_construction(five):
    v = five.villages.set_index("village_code")
    for code, (measured, cap_class, cls, best) in EXPECTED.items():
        assert v.at[code, "measured_class"] == measured, code
        assert v.at[code, "capability_class"] == cap_class, code
        assert v.at[code, "speed_class"] == cls, code
        got = v.at[code, "capability_download_mbps"]
        assert np.isnan(got) if best is None else got == best, code
    assert set(v["speed_class"]) == set(FIVE_WAY)  # the world holds every class
    assert v.at["V7", "capability_technology"] == "FTTH"  # best across providers
    assert v.at["V7", "capability_providers"] == 2


def test_capability_basis_counts_and_gap_lists(five):
    h = five.headline
    # capability basis (default): meets + capability_only among administrative villages
    assert (h["speed_meets"], h["speed_insufficient"], h["speed_below"]) == (3, 1, 3)
    assert h["speed_share"] == pytest.approx(3 / 7)
    assert h["communities_speed_meets"] == 0
    v = five.villages.set_index("village_code")
    assert v["meets_targets"][lambda s: s].index.tolist() == ["V1", "V2"]
    assert sorted(five.gaps["fibre_but_slow"]["village_code"]) == ["V2", "V5"]
    fast = five.gaps["fast_without_fibre"].set_index("village_code")["fast_basis"]
    assert fast.to_dict() == {"V3": "measured", "V7": "capability", "C1": "measured"}
    summary = five.summaries["township"].iloc[0]
    assert (summary["speed_meets"], summary["speed_below"], summary["speed_insufficient"]) == (
        3,
        3,
        1,
    )


@pytest.mark.parametrize(("basis", "meets"), [("measured", 2), ("either", 4)])
def test_other_bases(tmp_path, basis, meets):
    r = analyse(load_config(write_world(tmp_path, basis=basis)))
    assert r.headline["speed_meets"] == meets
    assert (r.villages["speed_basis"] == basis).all()


def test_bad_capability_rows_are_recorded(five):
    rec = next(r for r in five.inputs if r.layer == "capability[0]")
    assert rec.rows_read == 9 and rec.rows_used == 7  # 7 good rows + 2 bad
    assert rec.dropped == {"unknown_code": 1, "bad_download": 1}


def test_without_capability_the_classes_stay_three_way(tmp_path):
    r = analyse(load_config(write_world(tmp_path, capability=False)))
    v = r.villages.set_index("village_code")
    assert {c: v.at[c, "speed_class"] for c in EXPECTED} == {c: e[0] for c, e in EXPECTED.items()}
    assert "fibre_but_slow" not in r.gaps and "speed_counts" not in v.columns


def test_run_folder_lists_and_manifest(five, tmp_path):
    out = tmp_path / "run"
    write_run(five, out, maps=False)
    tables = out / "tables"
    slow = pd.read_csv(tables / "gaps_fibre_but_slow.csv", encoding="utf-8-sig")
    assert sorted(slow["village_code"]) == ["V2", "V5"]
    fast = pd.read_csv(tables / "gaps_fast_without_fibre.csv", encoding="utf-8-sig")
    assert sorted(fast["village_code"]) == ["C1", "V3", "V7"]
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    kinds = [s["kind"] for s in manifest["parameters"]["speed"]]
    assert kinds == ["tests", "capability"]
    assert {i["layer"] for i in manifest["inputs"]} >= {"speed", "capability[0]"}
    # the written config.toml recomputes the same classes
    again = analyse(load_config(out / "config.toml")).villages
    assert again["speed_class"].tolist() == five.villages["speed_class"].tolist()


def test_map_legend_has_a_class_for_every_five_way_class(five, tmp_path):
    out = write_run(five, tmp_path / "run", maps=True)
    page = (out / "maps" / "province.html").read_text(encoding="utf-8")
    got = legend_of(layers(page)["villages"])
    assert got == legend_from_csv(out, five_way=True)
    # by construction (WORLD): fibre in V1 (meets), V2 (capability only), V5 (fails); no
    # fibre in V3, V4, V6, V7 and the community C1
    label = {cls: text for cls, (text, _) in FIVE_WAY_LEGEND.items()}
    assert {text: n for text, _, n in got} == {
        label["meets"]: 1,
        label["capability_only"]: 1,
        label["measured_only"]: 0,
        label["fails"]: 1,
        label["insufficient_data"]: 0,
        GAP[0]: 5,
        NOT_COUNTED[0]: 0,
    }
    # every colour of the legend is its own
    assert len({colour for _, colour, _ in got}) == len(got)


def test_rule_properties():
    rng = np.random.default_rng(5)
    measured = rng.choice(["meets", "below", "insufficient_data"], 500)
    cap = np.where(rng.random(500) < 0.3, np.nan, rng.uniform(0, 30, 500))
    cls, _ = five_way_class(measured, cap, np.full(500, 12.0))
    assert set(cls) <= set(FIVE_WAY)
    # raising capability never makes a village count less, under any basis
    cls2, _ = five_way_class(measured, np.where(np.isnan(cap), 50.0, cap + 10), np.full(500, 12.0))
    for basis in ("capability", "measured", "either"):
        assert (counts_for_basis(cls2, basis=basis) >= counts_for_basis(cls, basis=basis)).all()


def test_config_errors():
    base = {"villages": {"path": "v.csv"}}
    two = [
        {"path": "a.csv", "kind": "tests"},
        {"path": "b.parquet", "kind": "ookla_tiles", "network": "fixed"},
    ]
    with pytest.raises(RuralcovError, match="at most one"):
        config_from_dict({**base, "speed": two})
    with pytest.raises(RuralcovError, match="speed_basis"):
        config_from_dict(
            {
                **base,
                "run": {"speed_basis": "both"},
                "speed": [{"path": "c.csv", "kind": "capability"}],
            }
        )


def test_capability_in_kbps(tmp_path):
    """download_unit applies to capability tables too (download and upload): a table in kbit/s
    read as Mbit/s would make every village capable, so it stops the run naming the setting;
    declared, it gives the classes known by construction."""
    from ruralcov.errors import UnitError

    path = write_world(tmp_path)
    cap = pd.read_csv(tmp_path / "capability.csv")
    numeric = pd.to_numeric(cap["down"], errors="coerce")
    cap["down"] = (numeric * 1000).astype(object).where(numeric.notna(), cap["down"])
    cap["up"] = cap["up"] * 1000
    cap.to_csv(tmp_path / "capability.csv", index=False)
    with pytest.raises(UnitError, match=r'capability\[0\]: .*\'down\'.*download_unit = "kbps" '
                                        r"in its \[\[speed\]\] block"):
        analyse(load_config(path))
    text = path.read_text(encoding="utf-8").replace('kind = "capability"\n',
                                                    'kind = "capability"\n'
                                                    'download_unit = "kbps"\n')
    path.write_text(text, encoding="utf-8")
    v = analyse(load_config(path)).villages.set_index("village_code")
    for code, (_measured, cap_class, cls, best) in EXPECTED.items():
        assert (v.at[code, "capability_class"], v.at[code, "speed_class"]) == (cap_class, cls)
        got = v.at[code, "capability_download_mbps"]
        assert np.isnan(got) if best is None else got == best, code
    assert v.at["V1", "capability_upload_mbps"] == 10.0  # op-a's 10 Mbit/s upload, in kbit/s


def test_capability_codes_changed_by_a_spreadsheet_are_an_error(tmp_path):
    from ruralcov.capability import load_capability
    from ruralcov.errors import SchemaError

    path = tmp_path / "cap.csv"
    path.write_text("village_code,down\n140105001001,50\n1.40105E+11,100\n", encoding="utf-8")
    s = config_from_dict(
        {"villages": {"path": "v.csv"},
         "speed": [{"path": str(path), "kind": "capability", "download": "down"}]},
        base=tmp_path,
    ).capability[0]
    with pytest.raises(SchemaError, match=r"capability\[0\] \(cap.csv\): column 'village_code'"
                                          r".*row 2 '1.40105E\+11'"):
        load_capability(s, 0, pd.Series(["140105001001"]))
