"""The run folder is never lost, clobbered or half-written (ruralcov.outdir).

These tests use real processes: a ``ruralcov`` command is started as a subprocess and stopped
(SIGSTOP) or killed (SIGKILL) by itself at a chosen file-system operation. The choice is made
by a Python audit hook installed by the test's own launcher (:data:`LAUNCHER`), which sees every
``open``, ``os.rename``, ``os.mkdir``, ``os.link``, ``os.remove`` and ``shutil.rmtree`` before it
happens; the package has no test hook of its own. A kill before an operation is a kill at any
instant between it and the one before, since nothing on disk changes in between.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ruralcov import outdir
from ruralcov.cli import cli
from worlds import write_north_world

#: Runs the ``ruralcov`` CLI with its arguments; RURALCOV_TEST_STOP (JSON) says where to stop:
#: the ``nth`` operation ``event`` whose path(s) match ``match``, counted only after an operation
#: matching ``after`` (an [event, regex] pair) was seen; ``signal`` is SIGKILL or SIGSTOP.
LAUNCHER = r"""
import json, os, re, signal, sys

stop = json.loads(os.environ.get("RURALCOV_TEST_STOP") or "null")
state = {"armed": stop is not None and not stop.get("after"), "count": 0}
WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT


def paths(args):
    return " -> ".join(os.fsdecode(a) for a in args[:2] if isinstance(a, (str, bytes, os.PathLike)))


def hook(event, args):
    if stop is None:
        return
    if not state["armed"]:
        after_event, after_match = stop["after"]
        if event == after_event and re.search(after_match, paths(args)):
            state["armed"] = True
        return
    if event != stop["event"] or not re.search(stop["match"], paths(args)):
        return
    if event == "open" and not (isinstance(args[2], int) and args[2] & WRITE):
        return
    state["count"] += 1
    if state["count"] == stop.get("nth", 1):
        os.kill(os.getpid(), getattr(signal, stop["signal"]))


sys.addaudithook(hook)
from ruralcov.cli import main

sys.argv[0] = "ruralcov"
main()
"""


def start(*args: object, stop: dict | None = None) -> subprocess.Popen:
    env = dict(os.environ, RURALCOV_TEST_STOP=json.dumps(stop) if stop else "")
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, *(str(a) for a in args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8", env=env,
    )


def ruralcov(*args: object, stop: dict | None = None) -> subprocess.CompletedProcess:
    proc = start(*args, stop=stop)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def wait_stopped(proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Wait until ``proc`` stopped itself (SIGSTOP); fail if it ended instead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status = os.waitpid(proc.pid, os.WUNTRACED | os.WNOHANG)
        if pid and os.WIFSTOPPED(status):
            return
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            pytest.fail(f"the command ended ({proc.returncode}) before its stop point: "
                        f"{proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("the command did not reach its stop point in time")


def one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ruralcov: error: "), done.stderr
    return lines[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_whole(run: Path) -> None:
    """``run`` holds a complete run: every output and input of its manifest, hashes matching."""
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["outputs"], run
    for rel, digest in manifest["outputs"].items():
        assert sha256(run / rel) == digest, (run, rel)
    for rec in manifest["inputs"]:
        path = Path(rec["path"]) if Path(rec["path"]).is_absolute() else run / rec["path"]
        assert sha256(path) == rec["sha256"], (run, rec["path"])


def siblings(run: Path) -> list[str]:
    """Names beside ``run`` that belong to it: ``run.tmp-*``, ``run.old-*``, ``run.lock``."""
    return sorted(p.name for p in run.parent.iterdir() if p.name.startswith(f"{run.name}."))


@pytest.fixture
def run_with_inputs(tmp_path: Path) -> Path:
    """A run folder of the north world that holds its own inputs (like the demo's)."""
    run = tmp_path / "run"
    cfg = write_north_world(tmp_path / "src")
    for config in (cfg, run / "inputs" / cfg.name):  # a run, then one from its own inputs
        done = ruralcov("-q", "run", config, "--out", run, "--no-maps", "--force")
        assert done.returncode == 0, done.stderr
        shutil.copytree(cfg.parent, run / "inputs", dirs_exist_ok=True)
    assert_whole(run)
    assert json.loads((run / "manifest.json").read_text(encoding="utf-8"))["inputs"][0][
        "path"] == "inputs/register.csv"
    return run


# --- one writer at a time ------------------------------------------------------------------

STAGED = ["os.mkdir", r"run\.tmp-\w+$"]  # the new run's temporary folder is made


def test_a_second_command_on_a_folder_in_use_fails_and_writes_nothing(tmp_path: Path) -> None:
    cfg = write_north_world(tmp_path / "in")
    run = tmp_path / "run"
    first = start("-q", "run", cfg, "--out", run, "--no-maps",
                  stop={"event": STAGED[0], "match": STAGED[1], "signal": "SIGSTOP"})
    try:
        wait_stopped(first)
        before = sorted(p.name for p in tmp_path.rglob("*"))
        for args in (
            ["run", cfg, "--out", run, "--no-maps"],  # the same new folder, no --force
            ["run", cfg, "--out", tmp_path / "elsewhere" / ".." / "run", "--no-maps", "--force"],
            ["demo", "--out", run, "--no-maps", "--force"],
            ["map", run],
            ["plan", run],
        ):
            line = one_error_line(ruralcov(*args))
            assert "in use by another ruralcov command" in line, line
            assert f"pid {first.pid}" in line and "run.lock" in line, line
        assert sorted(p.name for p in tmp_path.rglob("*")) == before  # the losers wrote nothing
    finally:
        first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert_whole(run)
    assert siblings(run) == []


def test_the_lock_of_a_killed_command_is_taken_over_and_reported_once(tmp_path: Path) -> None:
    cfg = write_north_world(tmp_path / "in")
    run = tmp_path / "run"
    first = start("-q", "run", cfg, "--out", run, "--no-maps",
                  stop={"event": STAGED[0], "match": STAGED[1], "signal": "SIGSTOP"})
    wait_stopped(first)
    first.kill()
    first.communicate()
    lock = tmp_path / "run.lock"
    holder = json.loads(lock.read_text(encoding="utf-8"))
    assert holder["pid"] == first.pid and holder["host"]
    again = ruralcov("run", cfg, "--out", run, "--no-maps")
    assert again.returncode == 0, again.stderr
    took = [line for line in again.stderr.splitlines() if "took over" in line]
    assert len(took) == 1 and f"pid {first.pid}" in took[0] and str(lock) in took[0], again.stderr
    assert not lock.exists()
    assert siblings(run) == []  # the killed command's temporary folder is gone too
    assert_whole(run)
    third = ruralcov("run", cfg, "--out", run, "--no-maps", "--force")
    assert third.returncode == 0 and "took over" not in third.stderr, third.stderr


def test_a_lock_held_on_another_host_is_left_alone(tmp_path: Path) -> None:
    cfg = write_north_world(tmp_path / "in")
    lock = tmp_path / "run.lock"
    text = json.dumps({"pid": 4242, "host": "planner-pc-7", "started": "2026-05-02T08:00:00+00:00",
                       "command": "ruralcov run q2.toml"})
    lock.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(cli, ["-q", "run", str(cfg), "--out", str(tmp_path / "run"),
                                      "--no-maps"], catch_exceptions=False)
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert line.startswith("ruralcov: error: ") and "\n" not in line, result.stderr
    assert "planner-pc-7" in line and "pid 4242" in line and f"delete {str(lock)!r}" in line, line
    assert lock.read_text(encoding="utf-8") == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "run.lock"]


# --- crash-safe swap -------------------------------------------------------------------------

#: (instant, where to stop, True when the leftovers of the kill before must be gone by then)
KILLS = [
    ("writing the first file of the new run",
     {"event": "open", "match": r"run\.tmp-\w+/", "after": STAGED}, True),
    ("carrying the inputs of the old run over",
     {"event": "os.link", "match": r"/run/inputs/.+ -> .+/run\.tmp-\w+/inputs/", "nth": 3,
      "after": STAGED}, True),
    ("writing manifest.json, the last file",
     {"event": "open", "match": r"run\.tmp-\w+/\.manifest\.json\.tmp-", "after": STAGED}, True),
    # (after a kill that left no old run aside: the one deleted is this command's)
    ("halfway through deleting the old run",
     {"event": "os.remove", "match": ".", "nth": 6,
      "after": ["shutil.rmtree", r"/run\.old-\w+$"]}, True),
    ("setting the old run aside",
     {"event": "os.rename", "match": r"/run -> .+/run\.old-\w+$", "after": STAGED}, True),
    ("moving the new run in (the old one is aside)",
     {"event": "os.rename", "match": r"/run\.tmp-\w+ -> .+/run$", "after": STAGED}, True),
    ("recovering: putting the old run back",
     {"event": "os.rename", "match": r"/run\.old-\w+ -> .+/run$"}, False),
    ("recovering: removing what the killed commands left",
     {"event": "shutil.rmtree", "match": r"/run\.(tmp|old)-\w+$"}, False),
    ("deleting the old run once the new one is in",
     {"event": "shutil.rmtree", "match": r"/run\.old-\w+$",
      "after": ["os.rename", r"/run\.tmp-\w+ -> .+/run$"]}, True),
    ("releasing the lock", {"event": "os.remove", "match": r"/run\.lock$", "after": STAGED}, True),
]


def test_a_kill_at_any_step_of_a_rerun_never_loses_the_run(run_with_inputs: Path) -> None:
    # `ruralcov run RUN/config.toml --force` reads RUN/inputs and replaces RUN: the hard case
    run = run_with_inputs
    cfg = run / "config.toml"
    left: list[str] = []
    for instant, stop, recovered in KILLS:
        done = ruralcov("-q", "run", cfg, "--out", run, "--no-maps", "--force",
                        stop={**stop, "signal": "SIGKILL"})
        assert done.returncode == -signal.SIGKILL, (instant, done.returncode, done.stderr)
        now = siblings(run)
        if recovered:
            assert not set(left) & set(now), (instant, left, now)
        if run.exists():
            assert_whole(run)
        else:  # between the two renames: the old run waits, whole, to be put back
            olds = [n for n in now if re.fullmatch(r"run\.old-\w+", n)]
            assert len(olds) == 1, (instant, now)
            assert_whole(run.parent / olds[0])
        left = [n for n in now if n != "run.lock"]
    done = ruralcov("-q", "run", cfg, "--out", run, "--no-maps", "--force")
    assert done.returncode == 0, done.stderr
    assert_whole(run)
    assert siblings(run) == []


def test_a_killed_demo_leaves_the_previous_run_whole(run_with_inputs: Path) -> None:
    run = run_with_inputs
    before = {p.relative_to(run).as_posix(): sha256(p) for p in run.rglob("*") if p.is_file()}
    done = ruralcov("-q", "demo", "--out", run, "--no-maps", "--force",
                    stop={"event": "open", "match": r"/run(\.tmp-\w+)?/inputs/.", "nth": 2,
                          "signal": "SIGKILL"})
    assert done.returncode == -signal.SIGKILL, done.stderr
    after = {p.relative_to(run).as_posix(): sha256(p) for p in run.rglob("*") if p.is_file()}
    assert after == before


def test_recovery_puts_back_a_whole_old_run_and_removes_only_leftovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def fake_run(folder: Path, tag: str) -> Path:
        (folder / "tables").mkdir(parents=True)
        (folder / "tables" / "villages.csv").write_text(tag, encoding="utf-8")
        (folder / "manifest.json").write_text("{}", encoding="utf-8")
        return folder

    run = tmp_path / "run"
    fake_run(tmp_path / "run.old-0123456789ab", "old")  # set aside, then killed
    fake_run(tmp_path / "run.tmp-ba9876543210", "new")  # complete, never moved in
    (tmp_path / "run.tmp-aaaaaaaaaaaa").mkdir()  # half-written
    (tmp_path / "run.tmp-notes").mkdir()  # not ours: the name does not fit
    (tmp_path / "run2.old-0123456789ab").mkdir()  # another run's
    with outdir.locked(run):
        assert (run / "tables" / "villages.csv").read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run.tmp-notes",
                                                          "run2.old-0123456789ab"]
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(said) == 2, said
    assert "put back" in said[0] and "run.old-0123456789ab" in said[0]
    assert "run.tmp-aaaaaaaaaaaa" in said[1] and "run.tmp-ba9876543210" in said[1]
    caplog.clear()
    with outdir.locked(run):
        pass
    assert not caplog.records  # reported once


def test_a_set_aside_run_is_kept_when_the_folder_holds_no_complete_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # what ruralcov 0.1 left when `demo --force` was killed: RUN with only inputs/, the old run
    # in RUN.old-*/RUN; neither is deleted, and the user is told where the old run is
    run = tmp_path / "run"
    (run / "inputs").mkdir(parents=True)
    aside = tmp_path / "run.old-k2j4h5g6" / "run"
    aside.mkdir(parents=True)
    (aside / "manifest.json").write_text("{}", encoding="utf-8")
    with outdir.locked(run):
        pass
    assert (aside / "manifest.json").is_file() and (run / "inputs").is_dir()
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(said) == 1 and "run.old-k2j4h5g6" in said[0], said


# --- permissions and paths ------------------------------------------------------------------


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_run_folder_follows_the_umask(tmp_path: Path) -> None:
    cfg = write_north_world(tmp_path / "in")
    out = tmp_path / "out"
    old = os.umask(0o027)
    try:
        for args in (["run", cfg, "--out", out, "--no-maps"], ["plan", out], ["map", out]):
            result = CliRunner().invoke(cli, ["-q", *map(str, args)], catch_exceptions=False)
            assert result.exit_code == 0, result.output
    finally:
        os.umask(old)
    dirs = [out, *(p for p in out.rglob("*") if p.is_dir())]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {"plan.csv", "plan.parquet", "manifest.json"} <= {p.name for p in files}
    assert {"maps", "tables"} <= {p.name for p in dirs}
    assert {p.relative_to(tmp_path).as_posix(): _mode(p) for p in dirs} == {
        p.relative_to(tmp_path).as_posix(): 0o750 for p in dirs
    }
    assert {p.relative_to(tmp_path).as_posix(): _mode(p) for p in files} == {
        p.relative_to(tmp_path).as_posix(): 0o640 for p in files
    }


def test_inputs_are_named_as_written_and_found_inside_a_linked_run_folder(tmp_path: Path) -> None:
    def run(*args: object) -> dict:
        result = CliRunner().invoke(cli, ["-q", "run", *map(str, args), "--no-maps"],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return json.loads((out / "manifest.json").read_text(encoding="utf-8"))

    real = tmp_path / "2026q3"
    cfg = write_north_world(real)
    (tmp_path / "current").symlink_to(real, target_is_directory=True)
    out = tmp_path / "run"
    manifest = run(tmp_path / "current" / cfg.name, "--out", out)
    data = str(tmp_path / "current") + os.sep
    assert [Path(r["path"]).parent for r in manifest["inputs"]] == [tmp_path / "current"] * 6
    assert data in (out / "config.toml").read_text(encoding="utf-8")
    assert str(real) not in (out / "manifest.json").read_text(encoding="utf-8")
    # the run folder through a link, its inputs inside it: still found inside, and carried over
    shutil.copytree(real, out / "inputs")
    (tmp_path / "latest").symlink_to(out, target_is_directory=True)
    manifest = run(tmp_path / "latest" / "inputs" / cfg.name, "--out", tmp_path / "latest",
                   "--force")
    assert [r["path"] for r in manifest["inputs"]] == [
        f"inputs/{n}" for n in ("register.csv", "polygons.gpkg", "access_points.gpkg",
                                "routes.geojson", "operator.csv", "tests.csv")
    ]
    assert_whole(out)
    assert (tmp_path / "latest").resolve() == out and siblings(out) == []
