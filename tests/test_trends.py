"""Quarterly runs (ruralcov.trends) on the north world with two periods.

2020Q2 is the north world's own tests file (classes in ``worlds.EXPECTED``); 2020Q1 is the
same rows with every download halved, so by construction: V1 median 20 → 10 below, V3 8 → 4
below, V4 12 → 6 below, C1 80 → 40 below, and V2 / V5 / V6 stay insufficient. Fibre does not
depend on the period: V1, V2, V4 of the six administrative villages in both.

========  =====  ===================  =================
area      fibre  2020Q1 meets/below   2020Q2 meets/below
========  =====  ===================  =================
K1        3/6    0 / 3 (3 insuff.)    2 / 1 (3 insuff.)
T1        2/3    0 / 2 (V1, V3)       1 / 1 (V1 / V3)
T2        1/3    0 / 1 (V4)           1 / 0 (V4)
========  =====  ===================  =================
"""

from __future__ import annotations

import tomllib
from fractions import Fraction
from pathlib import Path

import pandas as pd
import pytest
import tomli_w
from click.testing import CliRunner

from ruralcov import analyse, load_config
from ruralcov.cli import cli
from ruralcov.config import config_from_dict
from ruralcov.errors import ConfigError
from ruralcov.trends import TREND_COLUMNS, period_config
from worlds import EXPECTED, write_north_world

#: (level, code, period) -> (villages, fibre_villages, speed_meets, speed_below, insufficient)
KNOWN = {
    ("county", "K1", "2020Q1"): (6, 3, 0, 3, 3),
    ("county", "K1", "2020Q2"): (6, 3, 2, 1, 3),
    ("township", "T1", "2020Q1"): (3, 2, 0, 2, 1),
    ("township", "T1", "2020Q2"): (3, 2, 1, 1, 1),
    ("township", "T2", "2020Q1"): (3, 1, 0, 1, 2),
    ("township", "T2", "2020Q2"): (3, 1, 1, 0, 2),
}


def _two_periods(folder: Path, *, declared: tuple[str, str] = ("2020Q1", "2020Q2")) -> Path:
    path = write_north_world(folder)
    tests = pd.read_csv(folder / "tests.csv")
    tests["down"] = tests["down"] / 2
    tests.to_csv(folder / "tests_q1.csv", index=False)
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    files = {"2020Q1": "tests_q1.csv", "2020Q2": "tests.csv"}
    del raw["speed"]["path"]
    raw["speed"]["periods"] = {k: files[k] for k in declared}
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory):
    path = _two_periods(tmp_path_factory.mktemp("north2"), declared=("2020Q2", "2020Q1"))
    return analyse(load_config(path))


def test_latest_period_is_the_headline(two) -> None:
    v = two.villages.set_index("village_code")
    for code, (fibre, *_rest, cls) in EXPECTED.items():
        assert v.loc[code, "speed_class"] == cls
        assert bool(v.loc[code, "fibre"]) is fibre
    assert set(v["speed_period"]) == {"2020Q2"}
    assert v.loc["V1", "speed_trend"] == "2020Q1 below → 2020Q2 meets"
    assert v.loc["V2", "speed_trend"] == "2020Q1 insufficient_data → 2020Q2 insufficient_data"
    assert two.headline["speed_meets"] == 2


def test_trend_tables_match_construction(two) -> None:
    assert set(two.trends) == {"county", "township"}
    for level, trend in two.trends.items():
        assert list(trend.columns) == list(TREND_COLUMNS)
        for row in trend.itertuples():
            n, fibre, meets, below, insuff = KNOWN[(level, row.code, row.period)]
            assert (
                row.villages,
                row.fibre_villages,
                row.speed_meets,
                row.speed_below,
                row.speed_insufficient,
            ) == (n, fibre, meets, below, insuff)
            assert Fraction(row.fibre_share).limit_denominator(10) == Fraction(fibre, n)
            assert Fraction(row.speed_share).limit_denominator(10) == Fraction(meets, n)
        assert len(trend) == sum(1 for k in KNOWN if k[0] == level)
    k1 = two.trends["county"].set_index("period")
    assert pd.isna(k1.loc["2020Q1", "speed_share_change"])
    assert k1.loc["2020Q2", "speed_share_change"] == pytest.approx(2 / 6)
    # tests inside administrative villages: V1 7, V2 6, V3 6, V4 5 in both periods
    assert list(k1["tests"]) == [24, 24]
    # the latest period's rows equal the headline summaries
    latest = two.trends["township"].query("period == '2020Q2'").set_index("code")
    summary = two.summaries["township"].set_index("code")
    for col in ("villages", "fibre_villages", "speed_meets", "speed_share", "fibre_gap_villages"):
        assert list(latest[col]) == list(summary[col])
    assert summary.loc["T1", "speed_share_trend"] == "2020Q1 0.0 % → 2020Q2 33.3 %"


def test_earlier_period_equals_that_period_run_alone(tmp_path: Path, monkeypatch) -> None:
    # The earlier period is measured on the headline's villages and fibre, read once; its
    # trend rows and classes must be those of a whole run of that period's file alone.
    from ruralcov import pipeline

    config = load_config(_two_periods(tmp_path))
    alone = analyse(period_config(config, "2020Q1"))
    reads = []
    real = pipeline.load_fibre
    monkeypatch.setattr(pipeline, "load_fibre", lambda *a, **k: reads.append(1) or real(*a, **k))
    both = analyse(config)
    assert len(reads) == len(config.fibre)  # the fibre inputs read once for both periods
    for level, trend in both.trends.items():
        q1 = trend[trend["period"] == "2020Q1"].set_index("code")
        own = alone.summaries[level].set_index("code")
        for col in ("villages", "fibre_villages", "speed_meets", "speed_below", "speed_share"):
            assert q1[col].to_dict() == own.loc[q1.index, col].to_dict(), (level, col)
    first = both.villages.set_index("village_code")["speed_trend"].str.split(" ").str[1]
    assert first.to_dict() == alone.villages.set_index("village_code")["speed_class"].to_dict()


def test_earlier_period_is_recorded(two) -> None:
    layers = [r.layer for r in two.inputs]
    assert layers.count("speed") == 1 and layers.count("speed[2020Q1]") == 1
    q1 = next(r for r in two.inputs if r.layer == "speed[2020Q1]")
    assert Path(q1.path).name == "tests_q1.csv"
    assert q1.rows_read == q1.rows_used + sum(q1.dropped.values())
    assert q1.rows_read == 32  # 28 tests, the edge point and 3 bad rows
    found = two.issues[two.issues["layer"] == "speed[2020Q1]"]
    assert set(found["reason"]) >= {"outside_villages"}
    assert int(found["dropped"].sum()) == sum(q1.dropped.values())


def test_period_config_and_errors(tmp_path: Path) -> None:
    path = _two_periods(tmp_path)
    config = load_config(path)
    assert config.speed is not None and config.speed.path == tmp_path / "tests.csv"
    assert list(config.speed.periods) == ["2020Q1", "2020Q2"]
    q1 = period_config(config, "2020Q1")
    assert q1.speed is not None and q1.speed.path == tmp_path / "tests_q1.csv"
    assert q1.speed.periods is None
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    wrong = {**raw, "speed": {**raw["speed"], "path": "tests_q1.csv"}}
    with pytest.raises(ConfigError, match="latest period"):
        config_from_dict(wrong, base=tmp_path)
    cap = {
        **raw,
        "speed": [{"path": "cap.csv", "kind": "capability", "periods": {"2020Q1": "cap.csv"}}],
    }
    with pytest.raises(ConfigError, match="periods are for kind tests or ookla_tiles"):
        config_from_dict(cap, base=tmp_path)
    with pytest.raises(ConfigError, match="periods must be a table"):
        config_from_dict({**raw, "speed": {**raw["speed"], "periods": {}}}, base=tmp_path)


def test_run_folder_has_trend_tables_charts_and_popups(tmp_path: Path) -> None:
    path = _two_periods(tmp_path / "in")
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["run", str(path), "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    county = pd.read_csv(out / "tables" / "trend_county.csv", encoding="utf-8-sig")
    assert list(county.columns) == list(TREND_COLUMNS)
    assert list(county["period"]) == ["2020Q1", "2020Q2"]
    assert list(county["speed_meets"]) == [0, 2]
    assert (out / "tables" / "trend_township.csv").is_file()
    from PIL import Image

    with Image.open(out / "charts" / "trend_K1.png") as img:
        assert img.format == "PNG" and img.size == (320, 208)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Trend by period" in html and 'src="charts/trend_K1.png"' in html
    assert "tables/trend_county.csv" in html
    maps_html = "".join(p.read_text(encoding="utf-8") for p in (out / "maps").rglob("*.html"))
    assert "speed class by period" in maps_html and "speed share by period" in maps_html
    assert (
        "2020Q1 below \\u2192 2020Q2 meets" in maps_html
        or "2020Q1 below → 2020Q2 meets" in maps_html
    )
    manifest = (out / "manifest.json").read_text(encoding="utf-8")
    assert "speed[2020Q1]" in manifest and "tests_q1.csv" in manifest
    # the written config reproduces the run's periods
    again = load_config(out / "config.toml")
    assert again.speed is not None and list(again.speed.periods) == ["2020Q1", "2020Q2"]
