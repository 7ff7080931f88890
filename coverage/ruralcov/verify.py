"""Checking that a run folder is what its manifest says, and that it can be recomputed.

:func:`verify_run` re-hashes every input and output named in ``manifest.json``, lists every
file of the folder that the manifest does not account for, and, unless told not to,
recomputes the run from its ``config.toml`` into a temporary folder and compares it with the
folder, file by file:

- every file the run writes apart from the maps (``villages.parquet``, ``assets.parquet``,
  ``cells.parquet``, ``tables/*.csv``, ``report.xlsx``, ``report.html``, ``config.toml``,
  ``charts/``): byte for byte, the workbook and the report rendered with the manifest's
  ``created`` time (the only time they hold). Runs written before that was so may differ only
  in the workbook's creation time and in absolute paths to the inputs inside the folder in
  ``config.toml``: those are accepted.
  The maps are only re-hashed: ``ruralcov map`` (after a plan, say) redraws them from the
  folder with other bytes than the run drew, and with a basemap it does not record, so a
  recomputation could not tell an honest redraw from an edit; they hold no number that the
  tables do not;
- ``manifest.json``: every field (inputs with their row counts per reason, parameters,
  targets, corrections, the headline numbers); other versions of ruralcov or its libraries
  are reported as a note, not a difference.

A run folder is portable: ``config.toml`` and the manifest name the inputs that lie inside the
folder (the demo's ``inputs/``) relative to it, so a copied or moved folder is recomputed from
its own copy of them. A folder is never recomputed from other data than the run read: inputs
that ``config.toml`` names outside the folder and that are gone stop the check with an
:class:`~ruralcov.errors.InputError` naming them (``rerun=False`` still checks the folder's own
files); an input whose content changed is a difference of its own (``changed``), and the
recomputation from it is said to follow from it; a ``config.toml`` that reads a layer from
another file than the one the manifest records (a copy whose configuration names the
original folder's inputs) is a difference for that layer.

Files added to the run folder after it was written are not part of the run: ``audits/`` and
``diffs/`` (``ruralcov audit`` / ``ruralcov diff``), the folders of inputs that lie inside it
(the demo's ``inputs/``), the plan (``ruralcov plan``: its files are checked against the
manifest's ``plan`` entry, and its section is taken out of ``report.html`` before the
comparison) and the lock files of office programs.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
import tomllib
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ruralcov.config import Config, as_written, load_config
from ruralcov.errors import InputError
from ruralcov.io import sha256_file
from ruralcov.pipeline import CoverageResult, analyse
from ruralcov.report import write_contents
from ruralcov.runfolder import read_manifest

__all__ = ["VERIFY_COLUMNS", "verify_run"]

VERIFY_COLUMNS = ("check", "path", "status", "message")

#: Top-level folders that other commands add to a finished run folder.
_ADDED_LATER = ("audits", "diffs")
#: Files that programs leave next to what they open (Excel/WPS lock files, OS metadata).
_LEAVINGS = re.compile(r"~\$.*|\.~lock\..*#|\.DS_Store|Thumbs\.db|desktop\.ini")
#: Manifest fields that say with what the run was made, not what it found.
_VERSION_FIELDS = ("ruralcov_version", "versions")
_PLAN_SECTION = re.compile(r'<section id="plan">.*?</section>\n', flags=re.DOTALL)


def verify_run(run: Path | str, *, rerun: bool = True) -> pd.DataFrame:
    """Check a run folder against its manifest and, with ``rerun``, against a recomputation.

    Parameters
    ----------
    run
        A run folder.
    rerun
        Recompute the run from its ``config.toml`` and compare; without, only re-hash.

    Returns
    -------
    pandas.DataFrame
        One row per check (:data:`VERIFY_COLUMNS`). ``check`` is ``output`` (file vs
        manifest), ``plan`` (plan file vs the manifest's ``plan`` entry), ``input`` (input file
        vs manifest), ``rerun`` (recomputed file vs the file in the folder), ``manifest``
        (recomputed manifest field vs the recorded one) or ``headline`` (recomputed headline
        numbers). ``status`` is ``ok``; ``changed``, ``missing``, ``unlisted`` or ``differs``
        (a difference); or ``note`` (worth saying, not a difference).

    Raises
    ------
    InputError
        When ``run`` has no readable manifest of the shape ruralcov writes; with ``rerun``,
        also when an input its ``config.toml`` names is missing (a folder copied or moved
        without the inputs it names outside itself).
    """
    run = Path(run)
    manifest = read_manifest(run)
    rows: list[dict[str, Any]] = []
    outputs: dict[str, str] = manifest["outputs"]
    plan_outputs: dict[str, str] = manifest.get("plan", {}).get("outputs", {})
    for rel, digest in sorted(outputs.items()):
        rows.append(_compare("output", rel, run / rel, digest))
    for rel, digest in sorted(plan_outputs.items()):
        rows.append(_compare("plan", rel, run / rel, digest))
    for rec in manifest["inputs"]:
        if "table" in rec or "query" in rec:  # a database: its rows are hashed when read again
            rows.append(_row("input", rec["path"], "note", "read from a database: the "
                             "recomputation compares the content hash of its rows"))
            continue
        rows.append(_compare("input", rec["path"], _recorded(run, rec), rec["sha256"]))
    rows.extend(_unlisted(run, manifest))
    if rerun:
        changed = [r["path"] for r in rows if r["check"] == "input" and r["status"] == "changed"]
        rows.extend(_rerun(run, manifest, changed_inputs=changed))
    return pd.DataFrame(rows, columns=list(VERIFY_COLUMNS))


def _recorded(run: Path, rec: Mapping[str, Any]) -> Path:
    """Where the input of a manifest record is: its path relative to the run folder when it
    lay inside it (a copied or moved folder has its own copy), else as written."""
    where = Path(rec["path"])
    return where if where.is_absolute() else run / where


def _row(check: str, path: str, status: str = "ok", message: str = "") -> dict[str, Any]:
    return {"check": check, "path": path, "status": status, "message": message}


def _compare(check: str, label: str, where: Path, digest: str | None) -> dict[str, Any]:
    if not where.exists():
        return _row(check, label, "missing", f"{where} is gone")
    found = sha256_file(where)
    if found != digest:
        return _row(check, label, "changed",
                    f"sha256 {found[:12]}… but the manifest has {str(digest)[:12]}…")
    return _row(check, label)


def _unlisted(run: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """A row for every file of ``run`` that the manifest does not account for."""
    known = set(manifest["outputs"]) | set(manifest.get("plan", {}).get("outputs", {}))
    known.add("manifest.json")
    skip = set(_ADDED_LATER)
    root = run.resolve()
    for rec in manifest["inputs"]:  # the folder (or file) holding an input inside the run
        if "table" in rec or "query" in rec:
            continue
        where = _recorded(run, rec).resolve()
        if where.is_relative_to(root) and where != root:
            skip.add(where.relative_to(root).parts[0])
    rows = []
    for path in sorted(run.rglob("*")):
        rel = path.relative_to(run)
        if (rel.parts[0] in skip or path.is_dir() or rel.as_posix() in known
                or _LEAVINGS.fullmatch(path.name)):
            continue
        rows.append(_row("output", rel.as_posix(), "unlisted",
                         "in the run folder but not among the manifest's outputs"))
    return rows


def _named_inputs(value: Any, where: str = "") -> Iterator[tuple[str, Path]]:
    """``(key, path)`` of every file a configuration names (``[run] out`` is not an input,
    ``base`` is the configuration's own folder)."""
    if isinstance(value, Path):
        yield where, value
    elif dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            if f.name not in ("base", "out"):
                yield from _named_inputs(getattr(value, f.name),
                                         f"{where}.{f.name}" if where else f.name)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _named_inputs(item, f"{where}.{key}")
    elif isinstance(value, tuple | list):
        for i, item in enumerate(value):
            yield from _named_inputs(item, f"{where}[{i}]")


def _check_inputs_there(run: Path, config: Config) -> None:
    """Stop before recomputing when an input ``config.toml`` names is gone: a copied or
    moved run folder is recomputed from the inputs its run read, or not at all."""
    gone: dict[Path, str] = {}
    for key, path in _named_inputs(config):
        if not path.exists():
            gone.setdefault(path, key)  # (speed.path is also one of its periods)
    if gone:
        raise InputError(
            f"cannot recompute {str(run)!r}: its config.toml names inputs that are not there: "
            f"{'; '.join(f'{key} = {str(path)!r}' for path, key in gone.items())}. A run is "
            "recomputed from the inputs it read or not at all: put them back at those paths "
            "(a copied or moved run folder carries the inputs inside it; those outside it "
            "must stay where they were), or check only the folder's own files with "
            "`ruralcov verify --no-rerun`"
        )


def _read_elsewhere(run: Path, manifest: dict[str, Any], result: CoverageResult
                    ) -> list[dict[str, Any]]:
    """A difference for each layer that ``config.toml`` reads from another file than the one
    the manifest records (a copy whose configuration names the original folder's inputs)."""
    recorded = {rec["layer"]: rec for rec in manifest["inputs"]}
    rows = []
    for rec in result.inputs:
        if rec.layer not in recorded:
            continue  # the manifest comparison names layers the run did not read
        if "table" in recorded[rec.layer] or "query" in recorded[rec.layer]:
            continue  # a database: compared by the content hash of its rows
        was = _recorded(run, recorded[rec.layer])
        if os.path.realpath(was) != os.path.realpath(rec.path):
            rows.append(_row("input", recorded[rec.layer]["path"], "differs",
                             f"config.toml reads {rec.layer} from {as_written(rec.path)}, "
                             f"not from {as_written(was)}, the file the run read"))
    return rows


def _rerun(run: Path, manifest: dict[str, Any], *, changed_inputs: list[str]
           ) -> list[dict[str, Any]]:
    """Recompute the run into a temporary folder and compare it with ``run``."""
    config = load_config(run / "config.toml")
    _check_inputs_there(run, config)
    result = analyse(config)
    recorded_html = _report_text(run, manifest)
    rows = _read_elsewhere(run, manifest, result)
    if changed_inputs:
        rows.append(_row("rerun", ", ".join(changed_inputs), "note",
                         "recomputed from inputs that changed since the run (see above): "
                         "the differences of the recomputation follow from them"))
    with tempfile.TemporaryDirectory(prefix="ruralcov-verify-") as tmp:
        again = Path(tmp)
        write_contents(result, again, out=run.resolve(), maps=False, created=manifest["created"],
                       figures=_figures(run, recorded_html))
        redone = {
            p.relative_to(again).as_posix(): p
            for p in sorted(again.rglob("*"))
            if p.is_file() and p.name != "manifest.json" and p.relative_to(again).parts[0] != "maps"
        }
        for rel, path in redone.items():
            rows.append(_same_file(run, rel, path, recorded_html))
        for rel in sorted(set(manifest["outputs"]) - set(redone)):
            if not rel.startswith("maps/"):
                rows.append(_row("rerun", rel, "differs",
                                 "listed in the manifest, but the run does not write it"))
        for rel in sorted(set(redone) - set(manifest["outputs"])):
            rows.append(_row("rerun", rel, "missing",
                             "the run writes it, but the manifest's outputs do not list it"))
        recomputed = read_manifest(again)
    rows.extend(_manifest_rows(manifest, recomputed))
    return rows


def _report_text(run: Path, manifest: dict[str, Any]) -> str | None:
    """``report.html`` as the run wrote it: without the section ``ruralcov plan`` added
    (when the manifest records a plan); None when the file is missing or not text."""
    try:
        text = (run / "report.html").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return _PLAN_SECTION.sub("", text, count=1) if "plan" in manifest else text


def _figures(run: Path, report: str | None) -> list[tuple[str, str]]:
    """The static maps the recorded report shows (``ruralcov map`` may have drawn maps after
    a run without them: the report did not show them then)."""
    from ruralcov.maps import report_figures  # (folium is imported only where maps are used)

    return [(src, caption) for src, caption in report_figures(run / "maps")
            if report is not None and f'src="{src}"' in report]


def _same_file(run: Path, rel: str, path: Path, recorded_html: str | None) -> dict[str, Any]:
    """The recomputed file ``path`` against the run's file ``rel``."""
    where = run / rel
    if not where.is_file():
        return _row("rerun", rel, "missing", "the run writes it, but the folder lacks it")
    if rel == "report.html":
        new = path.read_text(encoding="utf-8")
        if recorded_html == new:
            return _row("rerun", rel)
        return _row("rerun", rel, "differs", "recomputed report differs from the recorded "
                    "one" + _first_difference(recorded_html or "", new))
    found, digest = sha256_file(where), sha256_file(path)
    if (found == digest or (rel.endswith(".xlsx") and _same_workbook(where, path))
            or (rel == "config.toml" and _same_config(where, path, run))):
        return _row("rerun", rel)
    return _row("rerun", rel, "differs", "recomputed file differs from the recorded one: "
                f"sha256 {digest[:12]}… but the folder's has {found[:12]}…")


def _same_workbook(a: Path, b: Path) -> bool:
    """Whether two workbooks hold the same parts apart from the creation time
    (``docProps/core.xml``): runs made before ``report.xlsx`` took the manifest's time."""
    try:
        with zipfile.ZipFile(a) as za, zipfile.ZipFile(b) as zb:
            names = [n for n in za.namelist() if n != "docProps/core.xml"]
            return names == [n for n in zb.namelist() if n != "docProps/core.xml"] and all(
                za.read(n) == zb.read(n) for n in names
            )
    except (OSError, zipfile.BadZipFile):
        return False


def _same_config(a: Path, b: Path, run: Path) -> bool:
    """Whether two ``config.toml`` say the same once paths inside the run folder are
    relative (runs made before they were written so name them by absolute path)."""
    root = run.resolve()

    def relative(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: relative(v) for k, v in value.items()}
        if isinstance(value, list):
            return [relative(v) for v in value]
        if isinstance(value, str) and Path(value).is_absolute():
            where = Path(value).resolve()
            return where.relative_to(root).as_posix() if where.is_relative_to(root) else value
        return value

    try:
        old, new = (tomllib.loads(p.read_text(encoding="utf-8")) for p in (a, b))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return bool(relative(old) == relative(new))


def _first_difference(old: str, new: str) -> str:
    """``; first at line N: '…recorded…' -> '…recomputed…'``, a little of each around the
    first character that differs."""
    i = next((k for k, (x, y) in enumerate(zip(old, new, strict=False)) if x != y),
             min(len(old), len(new)))
    line = old.count("\n", 0, i) + 1
    a = max(0, i - 30)
    return f"; first at line {line}: {old[a:i + 40]!r} -> {new[a:i + 40]!r}"


def _manifest_rows(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """Recorded manifest fields against the recomputed ones (``outputs`` is compared file by
    file and ``plan`` is a later step, so neither is here)."""
    rows = []
    headline = _differences(old.get("headline"), new.get("headline"), "")
    rows.append(_row("headline", "manifest.json", "differs" if headline else "ok",
                     "; ".join(headline)))
    fields = sorted((set(old) | set(new)) - {"outputs", "plan", "headline", "created"})
    found, notes = [], []
    for key in fields:
        diffs = _differences(old.get(key), new.get(key), key)
        (notes if key in _VERSION_FIELDS else found).extend(diffs)
    if found:
        rows.append(_row("manifest", "manifest.json", "differs", "; ".join(found)))
    else:
        rows.append(_row("manifest", "manifest.json"))
    if notes:
        rows.append(_row("manifest", "manifest.json", "note",
                         "recomputed with other versions: " + "; ".join(notes)))
    return rows


def _differences(old: Any, new: Any, where: str) -> list[str]:
    """``where.key: recorded -> recomputed`` for every value that differs; list items that
    name their ``layer`` (the inputs) are labelled by it."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            at = f"{where}.{key}" if where else str(key)
            if key not in old:
                out.append(f"{at}: (absent) -> {new[key]!r}")
            elif key not in new:
                out.append(f"{at}: {old[key]!r} -> (absent)")
            else:
                out.extend(_differences(old[key], new[key], at))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            label = b.get("layer", i) if isinstance(b, dict) else i
            out.extend(_differences(a, b, f"{where}[{label}]"))
        return out
    if old == new and type(old) is type(new):
        return []
    return [f"{where}: {old} -> {new}" if where else f"{old} -> {new}"]
