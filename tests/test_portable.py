"""Portable run folders: a run folder copied or moved elsewhere, its original deleted, is
verified, mapped and compared from its own files, and never recomputed from another
folder's inputs; ``ruralcov diff`` compares inputs by their content, not their path text.

Expected values come from the north world (tests/worlds.py), whose answers are known by
construction.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tomllib
from pathlib import Path

import pandas as pd
import pytest
import tomli_w
from click.testing import CliRunner

from ruralcov import analyse, load_config, read_run, write_run
from ruralcov.cli import cli
from ruralcov.diff import diff_folders
from worlds import EXPECTED, write_north_world

#: Villages (kind village) with fibre in the north world: V1, V2 and V4.
FIBRE_VILLAGES = sum(1 for code, row in EXPECTED.items() if row[0] and code.startswith("V"))


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def lines_of(result) -> list[str]:
    return result.stdout.splitlines()


def has(lines: list[str], start: str, *words: str) -> bool:
    return any(line.startswith(start) and all(w in line for w in words) for line in lines)


def run_outside(tmp_path: Path) -> tuple[Path, Path]:
    """The north world's inputs in ``in/`` and its run folder ``run/`` beside them."""
    cfg = write_north_world(tmp_path / "in")
    run = tmp_path / "run"
    assert invoke("-q", "run", cfg, "--out", run, "--no-maps").exit_code == 0
    return cfg, run


def moved(run: Path, to: Path) -> Path:
    """``run`` copied to ``to`` and the original deleted."""
    shutil.copytree(run, to)
    shutil.rmtree(run)
    return to


def rehash(run: Path, rel: str) -> None:
    path = run / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["outputs"][rel] = hashlib.sha256((run / rel).read_bytes()).hexdigest()
    path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")


# --- verify and map on a copied or moved run folder -----------------------------------------


def test_moved_run_folder_with_its_inputs_verifies_and_maps(tmp_path):
    """The demo's layout (inputs inside the run folder) moved elsewhere: nothing refers to
    the old place, verify finds 0 differences, the maps are drawn, verify still passes."""
    original = tmp_path / "first" / "run"
    cfg = write_north_world(original / "inputs")
    write_run(analyse(load_config(cfg)), original, maps=False)
    run = moved(original, tmp_path / "elsewhere" / "copy")
    for name in ("config.toml", "manifest.json"):
        text = (run / name).read_text(encoding="utf-8")
        assert str(tmp_path / "first") not in text, name  # inputs named relative to the run
    assert tomllib.loads((run / "config.toml").read_text(encoding="utf-8"))["speed"]["path"] \
        == "inputs/tests.csv"
    result = invoke("verify", run)
    assert result.exit_code == 0, result.output
    assert lines_of(result)[-1].endswith(" 0 differences")
    result = invoke("-q", "map", run)
    assert result.exit_code == 0, result.output
    assert (run / "maps" / "index.html").is_file()
    assert read_run(run).headline["fibre_villages"] == FIBRE_VILLAGES
    result = invoke("verify", run)  # the maps drawn after the move are the folder's own
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_moved_demo_verifies_and_maps(demo_run, tmp_path):
    """`ruralcov demo`'s run folder (inputs built in a staging folder, then swapped in) moved
    away from where it was written: the same."""
    run = moved(shutil.copytree(demo_run, tmp_path / "written"), tmp_path / "moved")
    assert str(demo_run) not in (run / "config.toml").read_text(encoding="utf-8")
    result = invoke("verify", run)
    assert result.exit_code == 0, result.output
    assert lines_of(result)[-1].endswith(" 0 differences")
    assert invoke("-q", "map", run).exit_code == 0


def test_copy_without_its_outside_inputs_is_a_clear_error(tmp_path):
    """Inputs outside the run folder, gone with the original: no recomputation from nothing
    (one error line naming config.toml's inputs), while the folder's own files are still
    checked (--no-rerun) and drawn (map)."""
    cfg, original = run_outside(tmp_path)
    run = moved(original, tmp_path / "copy")
    shutil.rmtree(cfg.parent)
    result = invoke("verify", run)
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("ruralcov: error: cannot recompute")
    assert "config.toml names inputs that are not there" in line
    assert f"speed.path = '{cfg.parent / 'tests.csv'}'" in line
    assert "--no-rerun" in line
    result = invoke("verify", run, "--no-rerun")
    assert result.exit_code == 1
    missing = [line for line in lines_of(result) if line.startswith("missing  input")]
    assert len(missing) == 6  # register, polygons, three fibre sources, tests
    assert invoke("-q", "map", run).exit_code == 0


def test_copy_whose_outside_inputs_changed_reports_the_input(tmp_path):
    """The inputs at the recorded paths now hold other data: the input's hash difference is
    reported, and the recomputation is said to follow from it."""
    cfg, original = run_outside(tmp_path)
    run = moved(original, tmp_path / "copy")
    tests = pd.read_csv(cfg.parent / "tests.csv")
    tests.loc[tests["down"].isin([4, 6, 8]), "down"] = 20  # V3's median rises from 8 to 20
    tests.to_csv(cfg.parent / "tests.csv", index=False)
    result = invoke("verify", run)
    assert result.exit_code == 1
    lines = lines_of(result)
    assert has(lines, "changed  input", str(cfg.parent / "tests.csv"))
    assert has(lines, "note     rerun", str(cfg.parent / "tests.csv"),
               "recomputed from inputs that changed since the run")
    assert has(lines, "differs  headline", "speed_meets: 2 -> 3")


def test_copy_whose_config_names_the_original_inputs_is_a_difference(tmp_path):
    """A run folder whose config.toml names its inputs by absolute path (as runs did before
    they were written relative) copied elsewhere: the copy is not recomputed from the
    original's inputs without saying so, and not at all once they are gone."""
    original = tmp_path / "first"
    cfg = write_north_world(original / "inputs")
    write_run(analyse(load_config(cfg)), original, maps=False)
    text = (original / "config.toml").read_text(encoding="utf-8")
    inside = (original / "inputs").as_posix()
    (original / "config.toml").write_text(text.replace('"inputs/', f'"{inside}/'),
                                          encoding="utf-8")
    rehash(original, "config.toml")
    assert invoke("verify", original).exit_code == 0  # in place: the same files
    run = tmp_path / "copy"
    shutil.copytree(original, run)
    result = invoke("verify", run)
    assert result.exit_code == 1
    lines = lines_of(result)
    assert has(lines, "differs  input    inputs/tests.csv",
               f"config.toml reads speed from {inside}/tests.csv")
    assert sum(line.startswith("differs  input") for line in lines) == 6
    shutil.rmtree(original)
    result = invoke("verify", run)
    assert result.exit_code == 2
    assert "config.toml names inputs that are not there" in result.stderr


# --- diff compares inputs by content ----------------------------------------------------------


def with_periods(cfg: Path) -> Path:
    """The north world with two quarters of speed tests: 2026Q1 (the first 20 rows) and
    2026Q2 (tests.csv, the headline)."""
    folder = cfg.parent
    pd.read_csv(folder / "tests.csv").head(20).to_csv(folder / "tests_q1.csv", index=False)
    raw = tomllib.loads(cfg.read_text(encoding="utf-8"))
    del raw["speed"]["path"]
    raw["speed"]["periods"] = {"2026Q1": "tests_q1.csv", "2026Q2": "tests.csv"}
    cfg.write_text(tomli_w.dumps(raw), encoding="utf-8")
    return cfg


def test_diff_of_the_same_inputs_elsewhere_finds_no_parameter_changed(tmp_path):
    """The same files in two folders (paths written absolute, periods among them): no
    parameter changed, no village changed."""
    cfg_a = with_periods(write_north_world(tmp_path / "a"))
    shutil.copytree(cfg_a.parent, tmp_path / "b")
    cfg_b = tmp_path / "b" / cfg_a.name
    for cfg, out in ((cfg_a, "run_a"), (cfg_b, "run_b")):
        assert invoke("-q", "run", cfg, "--out", tmp_path / out, "--no-maps").exit_code == 0
    diff = diff_folders(tmp_path / "run_a", tmp_path / "run_b")
    assert diff.parameters.empty, diff.parameters.to_dict("records")
    assert diff.villages.empty
    result = invoke("diff", tmp_path / "run_a", tmp_path / "run_b", "--out", tmp_path / "d")
    assert result.exit_code == 0, result.output
    assert "parameter" not in result.stdout


def test_diff_names_an_input_whose_content_changed(tmp_path):
    """Two demo-like run folders, each with its own inputs/ (the same path text): the tests
    file changed in the second, and the diff says so with both hashes."""
    cfg = write_north_world(tmp_path / "q2" / "inputs")
    shutil.copytree(cfg.parent, tmp_path / "q3" / "inputs")  # (a GeoPackage written again
    tests_q3 = tmp_path / "q3" / "inputs" / "tests.csv"       # has other bytes: copied)
    tests = pd.read_csv(tests_q3)
    tests.loc[tests["down"].isin([4, 6, 8]), "down"] = 20  # V3 now meets the target
    tests.to_csv(tests_q3, index=False)
    runs = [tmp_path / "q2", tmp_path / "q3"]
    for run in runs:
        write_run(analyse(load_config(run / "inputs" / cfg.name)), run, maps=False)
    digest = {name: hashlib.sha256((tmp_path / name / "inputs" / "tests.csv").read_bytes())
              .hexdigest()[:12] for name in ("q2", "q3")}
    diff = diff_folders(*runs)
    assert diff.parameters.values.tolist() == [
        ["speed.path", f"inputs/tests.csv (sha256 {digest['q2']}…)",
         f"inputs/tests.csv (sha256 {digest['q3']}…)"]
    ]
    assert diff.villages.set_index("village_code").loc["V3", "speed_class_b"] == "meets"
    result = invoke("diff", *runs, "--out", tmp_path / "d")
    assert result.exit_code == 0, result.output
    assert f"parameter speed.path: inputs/tests.csv (sha256 {digest['q2']}…) -> " in result.stdout
