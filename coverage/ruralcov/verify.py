"""Checking that a run folder is what its manifest says, and that it can be recomputed.

:func:`verify_run` re-hashes every input and output named in ``manifest.json`` and, unless told
not to, recomputes the analysis from the run's ``config.toml`` into a temporary folder and
compares the deterministic outputs (``villages.parquet`` and ``tables/*.csv``, byte for byte
through their hashes) and the headline numbers. ``report.html``, ``report.xlsx`` and
``manifest.json`` carry the time of the run, and the maps are not compared on a re-run (they are
only re-hashed), so those are checked against the manifest only.

Files added to the run folder after it was written (``audits/``, ``diffs/``) are not part of
the run and are ignored.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from ruralcov.errors import InputError
from ruralcov.io import sha256_file

__all__ = ["VERIFY_COLUMNS", "verify_run"]

VERIFY_COLUMNS = ("check", "path", "status", "message")


def _is_deterministic(rel: str) -> bool:
    return rel == "villages.parquet" or (rel.startswith("tables/") and rel.endswith(".csv"))


def verify_run(run: Path | str, *, rerun: bool = True) -> pd.DataFrame:
    """One row per check (:data:`VERIFY_COLUMNS`); ``status`` is ``ok``, ``changed``,
    ``missing`` or ``differs``.

    ``check`` is ``output`` (file vs manifest), ``input`` (input file vs manifest),
    ``rerun`` (recomputed file vs manifest) or ``headline`` (recomputed headline numbers).
    """
    run = Path(run)
    path = run / "manifest.json"
    if not path.is_file():
        raise InputError(f"{run} is not a ruralcov run folder (no manifest.json)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"{path} is not valid JSON ({exc})") from exc
    rows: list[dict[str, Any]] = []
    for rel, digest in sorted(manifest.get("outputs", {}).items()):
        rows.append(_compare("output", rel, run / rel, digest))
    for rec in manifest.get("inputs", []):
        where = Path(rec["path"])
        where = where if where.is_absolute() else run / where
        rows.append(_compare("input", rec["path"], where, rec.get("sha256")))
    if rerun:
        rows.extend(_rerun(run, manifest))
    return pd.DataFrame(rows, columns=list(VERIFY_COLUMNS))


def _compare(check: str, label: str, where: Path, digest: str | None) -> dict[str, Any]:
    if not where.exists():
        return {"check": check, "path": label, "status": "missing", "message": f"{where} is gone"}
    found = sha256_file(where)
    if found != digest:
        return {
            "check": check,
            "path": label,
            "status": "changed",
            "message": f"sha256 {found[:12]}… but the manifest has {str(digest)[:12]}…",
        }
    return {"check": check, "path": label, "status": "ok", "message": ""}


def _rerun(run: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    from ruralcov.config import load_config
    from ruralcov.pipeline import analyse
    from ruralcov.report import _json_value, write_run

    config = load_config(run / "config.toml")
    result = analyse(config)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ruralcov-verify-") as tmp:
        again = write_run(result, Path(tmp) / "run", maps=False)
        for rel, digest in sorted(manifest.get("outputs", {}).items()):
            if not _is_deterministic(rel):
                continue
            row = _compare("rerun", rel, again / rel, digest)
            if row["status"] == "changed":
                row["status"] = "differs"
                row["message"] = "recomputed file differs from the recorded one: " + row["message"]
            rows.append(row)
        recomputed = json.loads((again / "manifest.json").read_text(encoding="utf-8"))
    old, new = manifest.get("headline", {}), _json_value(recomputed.get("headline", {}))
    diffs = [
        f"{k}: {old.get(k)} -> {new.get(k)}"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    ]
    rows.append(
        {
            "check": "headline",
            "path": "manifest.json",
            "status": "differs" if diffs else "ok",
            "message": "; ".join(diffs),
        }
    )
    return rows
