"""Configuration: defaults, profiles, overrides and errors that name the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from ruralcov.config import config_from_dict, config_to_dict, dump_config, load_config
from ruralcov.errors import ConfigError


def test_defaults_and_profile(tmp_path):
    c = config_from_dict({"villages": {"path": "v.gpkg"}}, base=tmp_path)
    assert c.villages.path == (tmp_path / "v.gpkg").resolve()
    assert (
        c.targets.fibre_share,
        c.targets.village_download_mbps,
        c.targets.community_download_mbps,
    ) == (0.98, 12.0, 100.0)
    assert c.maps.enabled and c.speed is None and c.fibre == ()


def test_targets_override_single_values(tmp_path):
    c = config_from_dict(
        {"villages": {"path": "v"}, "targets": {"fibre_share": 0.9}}, base=tmp_path
    )
    assert c.targets.fibre_share == 0.9 and c.targets.village_download_mbps == 12


def test_single_fibre_table_or_list(tmp_path):
    one = config_from_dict({"villages": {"path": "v"}, "fibre": {"path": "f.gpkg"}}, base=tmp_path)
    many = config_from_dict(
        {
            "villages": {"path": "v"},
            "fibre": [{"path": "a.gpkg"}, {"path": "b.csv", "kind": "table"}],
        },
        base=tmp_path,
    )
    assert len(one.fibre) == 1 and len(many.fibre) == 2 and many.fibre[1].kind == "table"


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"villages": {"path": "v", "colour": "red"}}, ["colour", "[villages]"]),
        ({"villages": {"path": "v"}, "extra": {}}, ["extra"]),
        ({"villages": {}}, ["[villages] path"]),
        ({"villages": {"path": "v"}, "run": {"profile": "nope"}}, ["profile", "shanxi-2020"]),
        ({"villages": {"path": "v"}, "fibre": {"path": "f", "kind": "cables"}}, ["cables"]),
        ({"villages": {"path": "v"}, "targets": {"fibre_share": 98}}, ["fibre_share"]),
        ({"villages": {"path": "v"}, "speed": {"path": "s", "min_tests": "five"}}, ["min_tests"]),
        ({"villages": {"path": "v", "register": "xx"}}, ["register", "cn-nbs"]),
        ({"villages": {"path": "v"}, "speed": {"path": "s", "download_unit": "Mbit/s"}},
         ["download_unit", "'Mbit/s'", "['mbps', 'kbps', 'bps']"]),
        ({"villages": {"path": "v"}, "speed": {"path": "s", "kind": "ookla_tiles",
                                                "network": "fixed", "download_unit": "kbps"}},
         ["download_unit", "ookla_tiles", "always kbit/s", "remove download_unit"]),
        ({"villages": {"path": "v"}, "speed": {"path": "s", "kind": "ookla_tiles",
                                                "network": "fixed", "weighting": "test"}},
         ["weighting 'test'", "did you mean 'tests'?", "['tests', 'tiles']"]),
        ({"villages": {"path": "v"}, "speed": {"path": "s", "kind": "ookla_tiles",
                                                "network": "fixed", "assignment": "area"}},
         ["assignment 'area'", "['centroid', 'area_weighted', 'intersects']"]),
        ({"villages": {"path": "v"}, "speed": {"path": "s", "weighting": "tiles",
                                                "pool": False}},
         ['weighting, pool: only for kind = "ookla_tiles"', "not 'tests'"]),
        ({"villages": {"path": "v"}, "speed": {"path": "s", "kind": "ookla_tiles",
                                                "network": "fixed", "pool": True}},
         ["pool = true", "give periods"]),
        ({"villages": {"path": "v"}, "speed": {"periods": {"2023Q1": "a"}, "pool": 1,
                                                "kind": "ookla_tiles", "network": "fixed"}},
         ["[speed] pool must be true or false, got 1"]),
    ],
)
def test_errors_name_the_problem(tmp_path, raw, words):
    with pytest.raises(ConfigError) as exc:
        config_from_dict(raw, base=tmp_path)
    for word in words:
        assert word in str(exc.value)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[villages\npath = ", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_dump_and_reload_round_trip(tmp_path):
    raw = {
        "run": {"name": "x", "provenance": "test"},
        "villages": {
            "path": "in/v.csv",
            "register": "generic",
            "levels": {"county": "c"},
            "names": {"county": "in/c.csv"},
        },
        "fibre": [{"path": "in/f.gpkg", "operational": ["ok"]}],
        "speed": {"path": "in/s.parquet", "device": "dev"},
        "targets": {"fibre_share": 0.95},
    }
    c = config_from_dict(raw, base=tmp_path)
    out = tmp_path / "config.toml"
    dump_config(c, out)
    text = out.read_text(encoding="utf-8")
    assert 'path = "in/v.csv"' in text  # relative: the run folder stays movable
    again = load_config(out)
    assert config_to_dict(again) == config_to_dict(c)
    assert isinstance(again.villages.names["county"], Path)


def test_download_unit_is_recorded_only_when_set(tmp_path):
    """Runs without the key record exactly the parameters they always did."""
    plain = config_from_dict({"villages": {"path": "v"}, "speed": {"path": "s"}}, base=tmp_path)
    assert plain.speed.download_unit is None
    assert "download_unit" not in config_to_dict(plain)["speed"]
    kbps = config_from_dict({"villages": {"path": "v"},
                             "speed": {"path": "s", "download_unit": "kbps"}}, base=tmp_path)
    assert config_to_dict(kbps)["speed"]["download_unit"] == "kbps"


def test_tile_methods_are_recorded_only_when_set(tmp_path):
    """The Ookla keys default to today's method (centroid, tests-weighted, one file) and runs
    without them record exactly the parameters they always did."""
    tiles = {"kind": "ookla_tiles", "network": "fixed"}
    plain = config_from_dict({"villages": {"path": "v"}, "speed": {**tiles, "path": "s"}},
                             base=tmp_path)
    assert (plain.speed.assignment, plain.speed.weighting, plain.speed.pool) == (None,) * 3
    assert not {"assignment", "weighting", "pool"} & set(config_to_dict(plain)["speed"])
    pooled = config_from_dict(
        {"villages": {"path": "v"},
         "speed": {**tiles, "periods": {"2023Q1": "a", "2023Q2": "b"},
                   "pool": True, "weighting": "tiles", "assignment": "intersects"}},
        base=tmp_path,
    )
    assert pooled.speed.path == tmp_path / "b"  # the latest period's file, as without pool
    assert {k: config_to_dict(pooled)["speed"][k] for k in ("pool", "weighting", "assignment")
            } == {"pool": True, "weighting": "tiles", "assignment": "intersects"}


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"targets": {"village_download_mbps": -5}}, "[targets] village_download_mbps"),
        ({"targets": {"community_download_mbps": float("nan")}},
         "[targets] community_download_mbps must be a finite number"),
        ({"fibre": {"path": "f", "max_distance_m": float("nan")}},
         "[fibre] max_distance_m must be a finite number"),
        ({"fibre": {"path": "f", "nearby_m": float("inf")}}, "[fibre] nearby_m"),
        ({"fibre": {"path": "f", "operational": ["operational", " "]}}, "blank value(s) [' ']"),
    ],
)
def test_values_that_would_change_numbers_silently(tmp_path, raw, words):
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"villages": {"path": "v"}, **raw}, base=tmp_path)
    assert words in str(exc.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -0.5])
def test_fibre_share_must_be_a_share(tmp_path, value):
    # held before the finite check too (nan fails 0 <= x <= 1): kept as a guard
    with pytest.raises(ConfigError, match="fibre_share"):
        config_from_dict({"villages": {"path": "v"}, "targets": {"fibre_share": value}},
                         base=tmp_path)


def test_zero_speed_target_is_allowed(tmp_path):
    c = config_from_dict({"villages": {"path": "v"}, "targets": {"village_download_mbps": 0}},
                         base=tmp_path)
    assert c.targets.village_download_mbps == 0


@pytest.mark.parametrize(
    "name",
    ["../../../pwn", "a/b", "a\\b", "..", ".", "", "  ", "a:b", 'a"b', "a|b", "a?b", "a*b",
     "a<b", "a>b", "tab\there", "name.", "name ", "CON", "nul.txt", "Com1"],
)
def test_run_name_is_one_plain_folder_name(tmp_path, name):
    # without --out the run goes to out/<name>: it must stay there, on every system
    with pytest.raises(ConfigError, match=r"\[run\] name .* is not a plain folder name"):
        config_from_dict({"run": {"name": name}, "villages": {"path": "v"}}, base=tmp_path)


@pytest.mark.parametrize("name", ["shanxi-2026q3", "山西 2026", "v1.2", "console", "com10"])
def test_ordinary_run_names_are_accepted(tmp_path, name):
    c = config_from_dict({"run": {"name": name}, "villages": {"path": "v"}}, base=tmp_path)
    assert c.run.name == name


def test_input_paths_keep_the_links_the_user_wrote(tmp_path):
    # data/current -> data/2026q3: reports name data/current, the path the user chose
    real = tmp_path / "data" / "2026q3"
    real.mkdir(parents=True)
    (real / "v.csv").write_text("code\n1\n", encoding="utf-8")
    (tmp_path / "data" / "current").symlink_to(real, target_is_directory=True)
    cfg = tmp_path / "run.toml"
    cfg.write_text('[villages]\npath = "data/current/v.csv"\n', encoding="utf-8")
    c = load_config(cfg)
    assert c.villages.path == tmp_path / "data" / "current" / "v.csv"
    assert config_to_dict(c)["villages"]["path"] == str(tmp_path / "data" / "current" / "v.csv")


def test_version_is_the_one_of_pyproject():
    """``ruralcov.__version__`` is pyproject.toml's version read from the package metadata,
    not a second literal that a release could forget to change."""
    import importlib.metadata
    import tomllib

    import ruralcov

    root = Path(__file__).resolve().parents[1]
    declared = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    version = declared["project"]["version"]
    assert ruralcov.__version__ == importlib.metadata.version("ruralcov") == version
    quoted = (f'"{version}"', f"'{version}'")
    sources = Path(ruralcov.__file__).parent.rglob("*.py")
    assert [p.name for p in sources if any(q in p.read_text("utf-8") for q in quoted)] == []
