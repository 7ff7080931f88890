"""The command line: runs, validation, and one-line errors with exit status 2."""

from __future__ import annotations

import re
import tomllib

import pytest
import tomli_w
from click.testing import CliRunner

from ruralcov.cli import cli
from worlds import write_north_world


@pytest.fixture
def north(tmp_path):
    return write_north_world(tmp_path / "in")


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_run_writes_run_folder(north, tmp_path):
    out = tmp_path / "run"
    result = invoke("-q", "run", north, "--out", out)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert (out / "tables" / "villages.csv").is_file()
    assert (out / "manifest.json").is_file() and (out / "config.toml").is_file()


def test_run_prints_headline(north, tmp_path):
    result = invoke("run", north, "--out", tmp_path / "run", "--no-maps")
    assert result.exit_code == 0
    assert "6 administrative villages; fibre 3 (50.00%" in result.stdout


def test_validate_reports_rows_without_writing(north, tmp_path):
    result = invoke("-q", "validate", north)
    assert result.exit_code == 0
    assert "speed: 32 rows read, 29 used" in result.stdout
    assert "outside_villages" in result.stdout
    assert not (tmp_path / "in" / "out").exists()


def _edit(path, **changes):
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        if value is None:
            raw[section].pop(key)
        else:
            raw[section][key] = value
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"villages__path": "nowhere.csv"}, ["nowhere.csv", "not found"]),
        ({"villages__code": "village_id"}, ["village_id"]),
        ({"speed__crs": None}, ["no CRS", "crs"]),
        ({"speed__colour": "red"}, ["colour"]),
        ({"speed__download": "dl"}, ["dl"]),
    ],
)
def test_bad_input_exits_2_with_one_line(north, tmp_path, changes, words):
    _edit(north, **changes)
    out = tmp_path / "run"
    result = invoke("run", north, "--out", out)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ruralcov: error: ")
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0]
    assert not out.exists()  # no partial run folder


def test_missing_config_file(tmp_path):
    result = invoke("run", tmp_path / "missing.toml")
    assert result.exit_code == 2 and "not found" in result.stderr


def test_help_has_examples():
    for command in ("run", "validate", "demo"):
        result = invoke(command, "--help")
        assert result.exit_code == 0 and "Example" in result.output


def test_demo_reports_every_step_in_order(tmp_path):
    """Building the inputs, the analysis, the tables, the maps and the report each show as a
    step (the bar on a terminal; the log with -v, as here)."""
    import subprocess
    import sys
    from pathlib import Path

    from ruralcov.pipeline import STEPS
    from ruralcov.report import WRITE_STEPS

    exe = Path(sys.executable).with_name("ruralcov")
    done = subprocess.run([str(exe), "-v", "demo", "--no-maps", "--out", str(tmp_path / "d")],
                          capture_output=True, text=True, check=True)
    seen = [line.split("step: ", 1)[1] for line in done.stderr.splitlines() if "step: " in line]
    assert seen == ["demo inputs", *STEPS, *WRITE_STEPS], done.stderr
    # each step, and the end, with the time since the start and the memory (bench/national.py)
    usage = re.compile(r"usage at (?:the start of (.+?)|(the end)): t=([\d.]+) s, rss ([\d.]+) "
                       r"GB, peak ([\d.]+) GB")
    marks = [m.groups() for m in usage.finditer(done.stderr)]
    assert [m[0] or m[1] for m in marks] == [*seen, "the end"]
    times = [float(m[2]) for m in marks]
    assert times == sorted(times) and times[-1] > times[0]
    peaks = [float(m[4]) for m in marks]
    assert all(b >= a - 0.01 for a, b in zip(peaks, peaks[1:], strict=False))  # high-water
    assert 0.1 < peaks[-1] < 8
    assert all(float(m[3]) <= float(m[4]) + 0.01 for m in marks)
