"""Every notebook runs top to bottom (its cells assert as they go), leaves nothing behind, and
is committed with its outputs cleared."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

FOLDER = Path(__file__).parents[1] / "notebooks"
NOTEBOOKS = sorted(FOLDER.glob("*.ipynb"))
#: One notebook per user, after the quick start.
USERS = ("01_quickstart", "02_planner", "03_engineer_quarterly", "04_auditor")


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    """Run in a kernel whose working folder and temporary folder are the test's own: both
    must be empty afterwards, and the notebooks' folder unchanged."""
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    before = _files(FOLDER)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute(env={**os.environ, "TMPDIR": str(tmp)})
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "administrative villages" in text
    assert _files(cwd) == set(), "the notebook left files in its working folder"
    assert _files(tmp) == set(), "the notebook left its temporary folder behind"
    assert _files(FOLDER) == before


def test_there_are_notebooks():
    assert set(USERS) <= {p.stem for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebooks_are_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebooks_use_the_public_api_only(path):
    """Imports of ruralcov are its front door and the public modules of a run folder's uses;
    no name with an underscore."""
    allowed = {"ruralcov", "ruralcov.audit", "ruralcov.diff", "ruralcov.verify", "ruralcov.demo"}
    nb = nbformat.read(path, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for line in code.splitlines():
        words = line.split()
        if words[:1] in (["import"], ["from"]) and words[1].split(".")[0] == "ruralcov":
            assert words[1] in allowed, line
            names = line.split(" import ", 1)[-1].replace("(", "").split(",")
            assert not [n for n in names if n.strip().startswith("_")], line
    assert "ruralcov._" not in code and "._" not in code.replace("__", "")
