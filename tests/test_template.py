"""`ruralcov init`'s template and the configuration reference, read from the dataclasses."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from ruralcov.cli import cli
from ruralcov.config import config_from_dict
from ruralcov.template import INTERNAL, SECTIONS, reference, template


def test_every_key_has_help_and_a_line_in_the_template():
    text = template()
    for section, (cls, _) in SECTIONS.items():
        for f in dataclasses.fields(cls):
            assert len(f.metadata.get("help", "")) > 10, (section, f.name)
            if (section, f.name) not in INTERNAL:
                pattern = rf"(?m)^(# )?{re.escape(f.name)} ="
                assert re.search(pattern, text), (section, f.name)
    assert [k for k, _, _ in reference()["maps"]] == ["enabled", "basemap", "vector_tiles",
                                                      "max_page_mb"]


def test_the_template_states_the_true_defaults():
    """What the template sets is what leaving the key out gives (but the placeholders)."""
    raw = tomllib.loads(template())
    paths = {"villages": "v.csv", "fibre": "f.gpkg", "speed": "t.parquet"}
    for section, path in paths.items():
        block = raw[section][0] if isinstance(raw[section], list) else raw[section]
        block["path"] = path
    filled = config_from_dict(raw, base=Path("/data"))
    bare = config_from_dict({"run": {"name": "my-run"}, "villages": {"path": "v.csv"},
                             "fibre": [{"path": "f.gpkg"}],
                             "speed": [{"path": "t.parquet", "crs": "EPSG:4326"}]},
                            base=Path("/data"))
    assert filled == bare


def test_init_then_validate_once_the_paths_are_filled_in(tmp_path):
    from ruralcov.demo import build_demo_inputs

    build_demo_inputs(tmp_path / "inputs", tests_per_village=1)
    runner = CliRunner()
    made = runner.invoke(cli, ["init", str(tmp_path)], catch_exceptions=False)
    assert made.exit_code == 0, made.output
    cfg = tmp_path / "config.toml"
    untouched = runner.invoke(cli, ["-q", "validate", str(cfg)])
    assert untouched.exit_code == 2 and "path" in untouched.stderr  # paths not yet given
    text = cfg.read_text(encoding="utf-8")
    for old, new in (("[villages]\n", "inputs/villages.csv"),
                     ("[[fibre]]\n", "inputs/fibre_access_points.gpkg"),
                     ("[[speed]]\n", "inputs/speedtests.parquet")):
        head, tail = text.split(old, 1)
        text = head + old + tail.replace('path = ""', f'path = "{new}"', 1)
    cfg.write_text(text, encoding="utf-8")
    checked = runner.invoke(cli, ["-q", "validate", str(cfg)], catch_exceptions=False)
    assert checked.exit_code == 0, checked.output
    assert "administrative villages" in checked.output


@pytest.mark.parametrize("exists", ["config", "file"])
def test_init_never_overwrites_without_force(tmp_path, exists):
    target = tmp_path / "x"
    if exists == "config":
        target.mkdir()
        (target / "config.toml").write_text("mine", encoding="utf-8")
    else:
        target.write_text("a file", encoding="utf-8")
    result = CliRunner().invoke(cli, ["init", str(target)])
    assert result.exit_code == 2 and result.stderr.startswith("ruralcov: error: ")
    if exists == "config":
        assert (target / "config.toml").read_text(encoding="utf-8") == "mine"
        forced = CliRunner().invoke(cli, ["init", str(target), "--force"])
        assert forced.exit_code == 0 and "[villages]" in (target / "config.toml").read_text(
            encoding="utf-8")
