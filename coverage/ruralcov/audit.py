"""Checking a claimed list against a run: which claims the data supports, and which not.

Operators and counties report lists of villages they say have fibre (or reach the speed
target). :func:`audit_claims` matches every row of such a list to the register of a run (by
village code, or by name within a township) and sorts each into one status of
:data:`STATUSES`; villages the run shows as covered but the list omits are added as
``evidence_not_claimed``. It is a pure function over two tables; :func:`read_claimed` and
:func:`write_audit` are the file ends used by ``ruralcov audit`` (the run's villages come from
:func:`ruralcov.runfolder.read_villages`).

Matching by name compares names after Unicode NFKC normalisation with blanks removed and the
register's committee suffix folded (``东关村委会`` and ``东关村民委员会`` both match ``东关村``;
``南街社区居委会`` matches ``南街社区``), because claimed lists are typed by hand. A name that
fits several villages of its township is reported ``name_ambiguous``, never guessed; township
names repeat across counties (``城关镇``), so a county's list can be matched within that county
only (``county``).

The audit files are handed over: each carries what it was made from (:func:`audit_about`: the
run's ``config_sha256`` and time, the claimed list's SHA-256, the audit's own time), as the
``about`` sheet of ``audit.xlsx`` and the sidecar ``audit.json`` next to ``audit.csv``, whose
numbers are written as the run's tables write them (:mod:`ruralcov.report.tables`).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ruralcov import io
from ruralcov.errors import (
    ConfigError,
    InputError,
    OutputExistsError,
    SchemaError,
    did_you_mean,
)
from ruralcov.report import cell_values, neutralise, write_csv
from ruralcov.report.tables import round_column
from ruralcov.runfolder import read_manifest
from ruralcov.schema import read_codes

__all__ = [
    "CLAIMS",
    "STATUSES",
    "AuditResult",
    "audit_about",
    "audit_claims",
    "check_target",
    "code_column",
    "looks_like_name",
    "read_claimed",
    "write_audit",
]

#: What a list claims, and the village column (or rule) that has to support it.
CLAIMS: dict[str, str] = {
    "fibre": "fibre = TRUE",
    "speed": "speed_class = meets",
    "both": "meets_targets = TRUE (fibre and speed)",
}

#: Every row of an audit has exactly one of these.
STATUSES: dict[str, str] = {
    "confirmed": "claimed, and the run supports the claim",
    "claimed_without_evidence": "claimed, but the run does not support the claim",
    "evidence_not_claimed": "the run supports it, but the list does not claim it",
    "unknown_code": "the claimed code is not in the register",
    "duplicate_claim": "the village was already claimed on an earlier row",
    "name_not_found": "no village of that name in that township",
    "name_ambiguous": "several villages of that name in that township",
    "missing_key": "the row has neither a code nor a name it can be matched by",
    "uncached_formula": "a key cell is an xlsx formula without a computed value "
    "(open and save the list in Excel or WPS, or paste values)",
}

SCOPES = ("county", "township", "all")

AUDIT_COLUMNS: tuple[str, ...] = (
    "status",
    "claim_row",
    "claimed_code",
    "claimed_name",
    "claimed_township",
    "village_code",
    "village_name",
    "kind",
    "township_code",
    "township_name",
    "county_code",
    "county_name",
    "supported",
    "fibre",
    "fibre_basis",
    "fibre_asset_id",
    "speed_class",
    "tests",
    "download_median_mbps",
    "corrections",
    "message",
)

#: The files an audit writes into its folder.
AUDIT_FILES = ("audit_summary.csv", "audit.csv", "audit.xlsx", "audit.json")

#: A CJK ideograph: a cell holding one is a name, never a code.
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")

_SUFFIXES = (
    (re.compile(r"(村民委员会|村委会)$"), "村"),
    (re.compile(r"(居民委员会|居委会)$"), ""),
)


@dataclass(frozen=True)
class AuditResult:
    """One row per claim row plus one per unclaimed supported village, and the counts."""

    #: AUDIT_COLUMNS, claimed rows in list order first, then evidence_not_claimed by code.
    rows: pd.DataFrame
    #: status, description, rows (every status listed, zeros included).
    summary: pd.DataFrame
    claim: str


def name_key(names: pd.Series) -> pd.Series:
    """Names as compared for matching: NFKC, no blanks, committee suffix folded.

    Parameters
    ----------
    names
        Village (or township) names as typed.

    Returns
    -------
    pandas.Series
        The keys, None for a missing or blank name.

    Examples
    --------
    >>> name_key(pd.Series(["东关村委会", " 东关 村 ", "南街社区居委会"])).tolist()
    ['东关村', '东关村', '南街社区']
    """

    def one(v: Any) -> Any:
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            return None
        text = re.sub(r"\s+", "", unicodedata.normalize("NFKC", str(v)))
        for pattern, repl in _SUFFIXES:
            text = pattern.sub(repl, text)
        return text or None

    return pd.Series([one(v) for v in names], index=names.index, dtype=object)


def _supported(villages: pd.DataFrame, claim: str) -> pd.Series:
    if claim == "fibre":
        return villages["fibre"].fillna(False).astype(bool)
    if claim == "speed":
        if "speed_counts" in villages.columns:  # five-way classes: the run's counting rule
            return villages["speed_counts"].fillna(False).astype(bool)
        return villages["speed_class"] == "meets"
    return villages["meets_targets"].fillna(False).astype(bool)


def audit_claims(
    villages: pd.DataFrame,
    claimed: pd.DataFrame,
    *,
    claim: str = "fibre",
    code: str | None = "village_code",
    name: str | None = None,
    township: str | None = None,
    county: str | None = None,
    scope: str = "county",
    source: str = "claimed list",
) -> AuditResult:
    """Check a claimed list against the villages of a run.

    Parameters
    ----------
    villages
        The run's village table (``villages.parquet`` or ``CoverageResult.villages``).
    claimed
        The claimed list, one village per row, in the order of the user's file (as
        :func:`read_claimed` reads it: rows whose code, name or township cell is an xlsx
        formula without a value are ``uncached_formula``, never matched on what is left).
    claim
        What the list claims: a key of :data:`CLAIMS`.
    code
        Column with village codes; rows with a code are matched by it. A column of names
        (:func:`looks_like_name`) matching no code of the run is an error saying to use
        ``name`` and ``township``.
    name, township
        Columns with the village name and its township (code or name). Rows without a code
        are matched by them when both are given; with ``code``, either may be given alone
        and is shown beside the code (``claimed_name``, ``claimed_township``).
    county
        A county code or name: rows are matched by name only to the villages of that county
        (township names repeat across counties).
    scope
        Where unclaimed supported villages are looked for: the counties (``county``) or
        townships (``township``) of the matched claims, or the whole run (``all``). A county's
        list is not faulted for omitting the villages of other counties.
    source
        The list as named in error messages, with its file: ``"claimed list (ops.xlsx)"``.
        Codes a spreadsheet changed (``1.40121E+11``) stop the audit
        (:func:`ruralcov.schema.read_codes`): they would be reported as unknown codes.

    Returns
    -------
    AuditResult
        One row per claimed row (in list order) and per supported village the list omits,
        and the count of each status. Columns of the run keep their kind (a count stays a
        whole number where a row has none).
    """
    cols = _check_request(claimed, claim=claim, code=code, name=name, township=township,
                          scope=scope)
    v = villages.reset_index(drop=True)
    keys = _ClaimKeys.of(claimed, code=code, name=name, township=township, source=source)
    matcher = _Matcher(v, _supported(v, claim).to_numpy(), claim,
                       by_name=bool(name and township), within=_county_mask(v, county))
    if code:
        _check_codes_are_codes(keys.codes, matcher.by_code, column=code, source=source)
    # row -> column -> cell of xlsx formulas without a value (ruralcov.io.read_table)
    unread: dict[int, dict[str, str]] = claimed.attrs.get("uncached_formulas", {})
    rows: list[dict[str, Any]] = []
    for j in range(len(claimed)):
        formulas = [ref for col, ref in unread.get(j, {}).items() if col in cols]
        rows.append(matcher.row(j, keys, formulas))
    rows.extend(matcher.unclaimed(scope))
    table = _typed(pd.DataFrame(rows).reindex(columns=list(AUDIT_COLUMNS)), v)
    counts = table["status"].value_counts()
    summary = pd.DataFrame(
        {
            "status": list(STATUSES),
            "description": list(STATUSES.values()),
            "rows": [int(counts.get(s, 0)) for s in STATUSES],
        }
    )
    return AuditResult(rows=table, summary=summary, claim=claim)


def _typed(table: pd.DataFrame, v: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the claim row and the run's whole-number columns as whole numbers:
    a row without a village (an unknown code) would otherwise turn ``tests`` into floats,
    written ``7.0``."""
    table["claim_row"] = table["claim_row"].astype("Int64")
    for col in table.columns:
        if col in v.columns and pd.api.types.is_integer_dtype(v[col].dtype):
            table[col] = table[col].astype("Int64")
    return table


def _check_request(claimed: pd.DataFrame, *, claim: str, code: str | None, name: str | None,
                   township: str | None, scope: str) -> list[str]:
    """The key columns of the claimed list; an error for anything asked that cannot be."""
    if claim not in CLAIMS:
        raise ValueError(f"`claim` was {claim!r} but is expected to be in {list(CLAIMS)}")
    if scope not in SCOPES:
        raise ValueError(f"`scope` was {scope!r} but is expected to be in {list(SCOPES)}")
    if code is None and (name is None) != (township is None):
        raise ConfigError("a claimed list matched by name needs both --name and --township")
    if code is None and name is None:
        raise ConfigError("give the claimed list's code column (--code) or --name/--township")
    cols = [c for c in (code, name, township) if c]
    missing = [c for c in cols if c not in claimed.columns]
    if missing:
        hints = "".join(did_you_mean(m, claimed.columns) for m in missing)
        raise SchemaError(
            f"claimed list lacks column(s) {missing}{hints}; its columns are "
            f"{list(claimed.columns)[:20]}. Name the columns with --code, --name and --township"
        )
    return cols


def looks_like_name(text: Any) -> bool:
    """Whether a cell of a code column reads as a name rather than a code.

    Parameters
    ----------
    text
        The cell, as read.

    Returns
    -------
    bool
        True when it holds a CJK character or no digit at all: codes of every register
        carry digits (``140105001001``, ``V1``); ``东关村`` and ``Nordby`` do not.

    Examples
    --------
    >>> [looks_like_name(t) for t in ("140105001001", "V1", "东关村", "Nordby", "村1")]
    [False, False, True, True, True]
    """
    text = str(text)
    return bool(_CJK.search(text)) or not any(ch.isdigit() for ch in text)


def _name_hint(column: str) -> str:
    return (f"; column {column!r} seems to hold names, not codes: match by name with "
            f"--name {column} and --township <the township column>")


def _check_codes_are_codes(codes: pd.Series, known: Mapping[str, int], *, column: str,
                           source: str) -> None:
    """Stop when the code column holds names: most cells read as names
    (:func:`looks_like_name`) and none is a code of the run. Every row would be an unknown
    code, when the user meant to match by name."""
    given = codes.dropna()
    if not len(given) or given.isin(list(known)).any():
        return
    names = given[given.map(looks_like_name)]
    if 2 * len(names) > len(given):
        raise SchemaError(
            f"{source}: none of the {len(given)} codes of column {column!r} is in the run "
            f"(e.g. {names.iat[0]!r}){_name_hint(column)}"
        )


def _county_mask(v: pd.DataFrame, county: str | None) -> np.ndarray | None:
    """The villages of ``county`` (a code or a name, compared as names are), or None for
    all; an error naming the counties of the run when it has none such."""
    if county is None:
        return None
    wanted = str(county).strip()
    mask = np.zeros(len(v), dtype=bool)
    if "county_code" in v.columns:
        mask |= (v["county_code"].astype("string") == wanted).fillna(False).to_numpy(bool)
    if "county_name" in v.columns:
        key = name_key(pd.Series([wanted])).iat[0]
        mask |= (name_key(v["county_name"]) == key).to_numpy(bool)
    if not mask.any():
        known = pd.concat([v.get("county_code", pd.Series(dtype=object)),
                           v.get("county_name", pd.Series(dtype=object))]).dropna().unique()
        raise ConfigError(f"--county {wanted!r}: no county of the run has that code or name"
                          f"{did_you_mean(wanted, [str(k) for k in known])}")
    return mask


@dataclass(frozen=True)
class _ClaimKeys:
    """The keys of every claimed row: code, name and township as read, and the names as
    compared (:func:`name_key`)."""

    codes: pd.Series
    names: pd.Series
    towns: pd.Series
    name_keys: pd.Series
    town_keys: pd.Series
    #: the code column's name in the list, for messages
    code_column: str | None

    @classmethod
    def of(cls, claimed: pd.DataFrame, *, code: str | None, name: str | None,
           township: str | None, source: str) -> _ClaimKeys:
        n = len(claimed)

        def none() -> pd.Series:
            return pd.Series([None] * n, dtype=object)

        codes = (read_codes(claimed[code], source=source, column=code).reset_index(drop=True)
                 if code else none())
        names = (claimed[name].astype("string").str.strip().astype(object).reset_index(drop=True)
                 if name else none())
        towns = (read_codes(claimed[township], source=source, column=township)
                 .reset_index(drop=True) if township else none())
        return cls(codes, names, towns, name_key(names), name_key(towns), code)


class _Matcher:
    """Claimed rows matched to the villages of a run, one at a time, in list order."""

    def __init__(self, v: pd.DataFrame, supported: np.ndarray, claim: str, *,
                 by_name: bool, within: np.ndarray | None = None) -> None:
        self.v, self.supported, self.claim = v, supported, claim
        self.by_code = {c: i for i, c in enumerate(v["village_code"])}
        self.by_name = by_name
        self.lookup = _name_lookup(v, within) if by_name else {}
        #: village position -> the row that first claimed it
        self.seen: dict[int, int] = {}

    def row(self, j: int, keys: _ClaimKeys, formulas: list[str]) -> dict[str, Any]:
        """The audit row of claimed row ``j`` (0-based)."""
        rec: dict[str, Any] = {
            "claim_row": j + 1,
            "claimed_code": keys.codes.iat[j],
            "claimed_name": keys.names.iat[j],
            "claimed_township": keys.towns.iat[j],
        }
        if formulas:
            rec.update(
                status="uncached_formula",
                message=f"{', '.join(formulas)}: a formula without a computed value, read as "
                "nothing; open and save the list in Excel or WPS (or paste values) and audit "
                "again",
            )
            return rec
        pos = self._find(j, keys, rec)
        if pos is not None:
            rec.update(self._verdict(pos, j))
        return rec

    def _find(self, j: int, keys: _ClaimKeys, rec: dict[str, Any]) -> int | None:
        """The village claimed on row ``j``; or None, with the status and message in ``rec``."""
        c = keys.codes.iat[j]
        if c is not None:
            pos = self.by_code.get(c)
            if pos is None:
                hint = _name_hint(keys.code_column) if looks_like_name(c) else ""
                rec.update(status="unknown_code",
                           message=f"code {c} is not in the register{hint}")
            return pos
        if keys.name_keys.iat[j] is None or not self.by_name:
            rec.update(status="missing_key", message=(
                "the row has neither a code nor a name" if self.by_name else
                "the row has no code; rows are matched by name only with both --name and "
                "--township"))
            return None
        town, wanted = keys.towns.iat[j], keys.name_keys.iat[j]
        hits = self.lookup.get((str(town), wanted), []) or self.lookup.get(
            (f"name:{keys.town_keys.iat[j]}", wanted), []
        )
        if len(hits) == 1:
            return hits[0]
        if not hits:
            rec.update(
                status="name_not_found",
                message=f"no village named {keys.names.iat[j]!r} in township {town!r}",
            )
        else:
            codes = ", ".join(str(self.v["village_code"].iat[h]) for h in hits)
            rec.update(
                status="name_ambiguous",
                message=f"{keys.names.iat[j]!r} in township {town!r} fits {codes}; "
                "give the code",
            )
        return None

    def _verdict(self, pos: int, j: int) -> dict[str, Any]:
        """The village's fields and whether the run supports the claim (or it repeats)."""
        ok = bool(self.supported[pos])
        rec = {**_village_fields(self.v, pos), "supported": ok}
        if pos in self.seen:
            rec.update(status="duplicate_claim", message=f"already claimed on row {self.seen[pos]}")
        else:
            self.seen[pos] = j + 1
            rec.update(status="confirmed" if ok else "claimed_without_evidence",
                       message=_evidence_text(self.v, pos, self.claim, ok))
        return rec

    def unclaimed(self, scope: str) -> list[dict[str, Any]]:
        """``evidence_not_claimed`` rows: supported villages in scope the list omits, by code."""
        v = self.v
        claimed_pos = np.zeros(len(v), dtype=bool)
        claimed_pos[list(self.seen)] = True
        in_scope = _scope_mask(v, claimed_pos, scope)
        counted = v["kind"].isin(["village", "community"]).to_numpy()
        extra = np.flatnonzero(self.supported & ~claimed_pos & in_scope & counted)
        order = np.argsort(v["village_code"].to_numpy()[extra].astype(str), kind="stable")
        return [
            {"status": "evidence_not_claimed", "supported": True, **_village_fields(v, pos),
             "message": _evidence_text(v, pos, self.claim, True) + "; not on the claimed list"}
            for pos in extra[order]
        ]


def _name_lookup(v: pd.DataFrame, within: np.ndarray | None = None
                 ) -> dict[tuple[str, str], list[int]]:
    """(township code, or ``name:`` + township name key; village name key) -> positions,
    of the villages ``within`` (default all)."""
    lookup: dict[tuple[str, str], list[int]] = {}
    keys = name_key(v["village_name"])
    town_names = name_key(v["township_name"]) if "township_name" in v else None
    for i, key in enumerate(keys):
        if key is None or (within is not None and not within[i]):
            continue
        lookup.setdefault((str(v["township_code"].iat[i]), key), []).append(i)
        if town_names is not None and town_names.iat[i] is not None:
            lookup.setdefault((f"name:{town_names.iat[i]}", key), []).append(i)
    return lookup


def _village_fields(v: pd.DataFrame, pos: int) -> dict[str, Any]:
    keep = [c for c in AUDIT_COLUMNS if c in v.columns and c not in ("supported",)]
    return {c: v[c].iat[pos] for c in keep}


def _evidence_text(v: pd.DataFrame, pos: int, claim: str, ok: bool) -> str:
    parts = []
    if claim in ("fibre", "both"):
        basis = v["fibre_basis"].iat[pos]
        asset = v["fibre_asset_id"].iat[pos] if "fibre_asset_id" in v else None
        parts.append(
            f"fibre: {basis}" + (f" ({asset})" if isinstance(asset, str) and asset else "")
            if bool(v["fibre"].iat[pos])
            else "no fibre evidence"
        )
    if claim in ("speed", "both"):
        parts.append(f"speed: {v['speed_class'].iat[pos]} ({int(v['tests'].iat[pos] or 0)} tests)")
    note = v["corrections"].iat[pos] if "corrections" in v else None
    if isinstance(note, str) and note:
        parts.append(f"corrected: {note}")
    return "; ".join(parts)


def _scope_mask(v: pd.DataFrame, claimed: np.ndarray, scope: str) -> np.ndarray:
    if scope == "all":
        return np.ones(len(v), dtype=bool)
    col = f"{scope}_code"
    if col not in v.columns or v[col].isna().all():
        return np.ones(len(v), dtype=bool)
    areas = set(v.loc[claimed, col].dropna())
    return v[col].isin(areas).to_numpy()


def read_claimed(path: Path | str, *, sheet: str | None = None) -> pd.DataFrame:
    """A claimed list: CSV (UTF-8 or GB18030), xlsx or Parquet.

    An xlsx cell holding a formula without a computed value is not read as empty: its row is
    noted (``attrs["uncached_formulas"]``, see :func:`ruralcov.io.read_table`) and
    :func:`audit_claims` reports it as ``uncached_formula``.

    Parameters
    ----------
    path
        The list.
    sheet
        The sheet of a workbook; default the first.

    Returns
    -------
    pandas.DataFrame
        One row per claimed village, in the file's order.
    """
    path = Path(path)
    if sheet is not None and path.suffix.lower() not in (".xlsx", ".xlsm"):
        raise InputError(f"claimed list: cannot read sheet {sheet!r} of {path}: only an "
                             "Excel workbook (.xlsx) has sheets")
    which = 0 if sheet is None else sheet
    try:
        return io.read_table(path, name="claimed list", sheet=which, uncached="report")
    except InputError as exc:
        if "utf-8" not in str(exc).lower():
            raise
        return io.read_table(path, encoding="gb18030", name="claimed list", sheet=which,
                             uncached="report")


def code_column(claimed: pd.DataFrame, *, name: str | None = None,
                township: str | None = None) -> str | None:
    """The code column of a claimed list when none was named (``ruralcov audit`` without
    ``--code``).

    Parameters
    ----------
    claimed
        The claimed list.
    name, township
        The name and township columns given, if any.

    Returns
    -------
    str or None
        None for a list matched by name (both ``name`` and ``township`` given); otherwise
        ``village_code`` or ``code`` when the list has one, else ``village_code`` (which the
        audit then reports missing, with the list's columns).

    Examples
    --------
    >>> code_column(pd.DataFrame(columns=["code", "村名"]), name="村名")
    'code'
    >>> code_column(pd.DataFrame(columns=["code", "村名", "乡镇"]), name="村名", township="乡镇")
    """
    if name and township:
        return None
    return next((c for c in ("village_code", "code") if c in claimed.columns), "village_code")


def audit_about(
    run: Path | str,
    claimed: Path | str,
    *,
    claim: str,
    code: str | None = None,
    name: str | None = None,
    township: str | None = None,
    county: str | None = None,
    scope: str = "county",
    sheet: str | None = None,
    created: str | None = None,
) -> dict[str, Any]:
    """What an audit was made from, for the files handed over: the ``about`` sheet of
    ``audit.xlsx`` and ``audit.json``.

    An audit is evidence about one run and one list: whoever receives it can check that the
    run (its ``config_sha256`` and time, from ``manifest.json``) and the list (its SHA-256)
    are the ones they hold.

    Parameters
    ----------
    run
        The run folder audited.
    claimed
        The claimed list's file.
    claim, code, name, township, county, scope, sheet
        As given to :func:`audit_claims` and :func:`read_claimed`.
    created
        The audit's time (ISO 8601); default now.

    Returns
    -------
    dict
        Keys and JSON values, in the order shown.
    """
    from ruralcov import __version__

    manifest = read_manifest(run)
    return {
        "audit_created": created or _now(),
        "ruralcov_version": __version__,
        "run": str(run),
        "run_name": manifest.get("run_name"),
        "run_created": manifest["created"],
        "config_sha256": manifest.get("config_sha256"),
        "claimed_list": str(claimed),
        "claimed_sha256": io.sha256_file(claimed),
        "sheet": sheet,
        "claim": claim,
        "code_column": code,
        "name_column": name,
        "township_column": township,
        "county": county,
        "scope": scope,
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def check_target(out: Path | str, *, force: bool = False) -> None:
    """Stop before an audit overwrites another one (``--force`` replaces it).

    Parameters
    ----------
    out
        The folder the audit is to be written into.
    force
        Replace the audit files found there.

    Raises
    ------
    OutputExistsError
        When ``out`` holds a file of :data:`AUDIT_FILES` and ``force`` is false.
    """
    out = Path(out)
    found = [n for n in AUDIT_FILES if (out / n).exists()]
    if found and not force:
        raise OutputExistsError(
            f"audit folder {str(out)!r} already holds an audit ({', '.join(found)}); add "
            "--force to replace it, or choose another --out folder"
        )


def write_audit(audit: AuditResult, out: Path | str, *, about: Mapping[str, Any] | None = None,
                force: bool = False) -> list[Path]:
    """Write the audit's files as the run's tables are written (:mod:`ruralcov.report`):
    neutralised against formula injection, codes as text, numbers rounded by column.

    Parameters
    ----------
    audit
        What :func:`audit_claims` returned.
    out
        The folder to write into; made when missing.
    about
        What the audit was made from (:func:`audit_about`); default only the time and the
        version.
    force
        Replace an earlier audit in ``out`` (:func:`check_target`).

    Returns
    -------
    list of pathlib.Path
        ``audit_summary.csv``, ``audit.csv``, ``audit.xlsx`` (sheets about, summary, audit)
        and ``audit.json`` (``about``, the counts and the SHA-256 of the CSV files: the CSV
        stays a plain table).
    """
    from ruralcov import __version__

    out = Path(out)
    check_target(out, force=force)
    out.mkdir(parents=True, exist_ok=True)
    about = dict(about or {"audit_created": _now(), "ruralcov_version": __version__})
    about["claim"] = audit.claim
    paths = [write_csv(audit.summary, out / "audit_summary.csv"),
             write_csv(audit.rows, out / "audit.csv")]
    paths.append(_write_book(audit, about, out / "audit.xlsx"))
    sidecar = {
        **about,
        "counts": dict(zip(audit.summary["status"], audit.summary["rows"].map(int),
                           strict=True)),
        "files": {p.name: io.sha256_file(p) for p in paths[:2]},
    }
    path = out / "audit.json"
    path.write_text(json.dumps(sidecar, ensure_ascii=False, indent=2) + "\n",
                    encoding="utf-8", newline="\n")
    paths.append(path)
    return paths


def _write_book(audit: AuditResult, about: Mapping[str, Any], path: Path) -> Path:
    """``audit.xlsx``: the ``about`` sheet (key, value), then the summary and the rows."""
    import xlsxwriter

    book = xlsxwriter.Workbook(
        str(path),
        {"strings_to_numbers": False, "strings_to_formulas": False, "strings_to_urls": False},
    )
    try:
        bold = book.add_format({"bold": True})
        facts = pd.DataFrame({"key": list(about), "value": [
            "" if v is None else str(v) for v in about.values()]})
        for name, frame in (("about", facts), ("summary", audit.summary), ("audit", audit.rows)):
            _write_sheet(book.add_worksheet(name), frame, bold)
    finally:
        book.close()
    return path


def _write_sheet(ws: Any, frame: pd.DataFrame, bold: Any) -> None:
    """One table as a sheet: a bold header, typed cells (:func:`ruralcov.report.cell_values`)
    rounded as in the CSV (:func:`ruralcov.report.tables.round_column`), frozen header and
    autofilter."""
    ws.write_row(0, 0, [neutralise(str(c)) for c in frame.columns], bold)
    for j, col in enumerate(frame.columns):
        for i, value in enumerate(cell_values(round_column(str(col), frame[col])), start=1):
            if value is None:
                continue
            if isinstance(value, bool):
                ws.write_boolean(i, j, value)
            elif isinstance(value, int | float):
                ws.write_number(i, j, value)
            else:
                ws.write_string(i, j, value)
    ws.freeze_panes(1, 0)
    ws.autofilter(0, 0, max(len(frame), 1), len(frame.columns) - 1)
