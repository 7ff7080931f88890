"""The corrections ledger: reviewed overrides of a village's fibre or speed class.

Some facts only a field visit can settle: an access point that is in the data but out of
service, one that works but is missing from the operator's export, speed tests taken during
an outage. Such findings go into a ledger (CSV or xlsx, one override per row) that the next run
applies after classification, before aggregation, so that every headline number, gap list and
map reflects them. Nothing is overridden silently: each applied override is a row of
``corrections.csv`` / the ``corrections`` sheet, an ``info`` issue, an entry in the manifest
and a text in the village's ``corrections`` column (shown in map popups).

Ledger columns (:data:`LEDGER_COLUMNS`)::

    village_code,field,value,reason,evidence,author,date
    140105002001,fibre,yes,asset_verified_on_site,site photo IMG_0412,Li Wei,2026-05-03

A ledger row that cannot be applied exactly as written (unknown village code, unknown field,
value or reason, missing evidence/author, a date that is not YYYY-MM-DD, two rows for the same
village and field) stops the run with one message listing every such row: an override that
quietly does nothing would be worse than none.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ruralcov import io
from ruralcov.classify import parse_yes_no
from ruralcov.config import CorrectionsConfig
from ruralcov.errors import SchemaError, did_you_mean, missing_columns
from ruralcov.schema import SPEED_CLASSES, read_codes
from ruralcov.validate import row_issues

__all__ = [
    "APPLIED_COLUMNS",
    "FIELDS",
    "LEDGER_COLUMNS",
    "REASONS",
    "apply_corrections",
    "check_ledger",
    "read_ledger",
]

LEDGER_COLUMNS: tuple[str, ...] = (
    "village_code",
    "field",
    "value",
    "reason",
    "evidence",
    "author",
    "date",
)

#: Fields a ledger may override and what their value means.
FIELDS: dict[str, str] = {
    "fibre": "yes/no (1/0, true/false, 是/否, 有/无)",
    "speed_class": " / ".join(SPEED_CLASSES),
}

#: Reason codes a ledger row may give. Kept short and fixed so that corrections can be
#: counted and reviewed by reason.
REASONS: dict[str, str] = {
    "asset_verified_on_site": "an operational access point was seen on site",
    "asset_not_in_service": "the asset in the data is not in service (damaged, removed, planned)",
    "asset_missing_from_data": "a working asset is missing from the operator's files",
    "register_entry_wrong": "the fibre register table is wrong for this village",
    "test_data_not_representative": "the speed tests do not represent the village "
    "(outage, wrong location, test campaign)",
    "speed_measured_on_site": "speed measured on site with documented equipment",
    "other": "anything else; the evidence must explain it",
}

#: Columns of the table of applied overrides (``CoverageResult.corrections``).
APPLIED_COLUMNS: tuple[str, ...] = (
    "row",
    "village_code",
    "field",
    "old_value",
    "new_value",
    "reason",
    "evidence",
    "author",
    "date",
)


def read_ledger(config: CorrectionsConfig) -> pd.DataFrame:
    """Read the ledger file as written, for :func:`check_ledger`.

    Parameters
    ----------
    config
        The ``[corrections]`` section.

    Returns
    -------
    pandas.DataFrame
        ``row`` (1-based source row) and the text columns :data:`LEDGER_COLUMNS`, blanks
        around values removed.

    Raises
    ------
    SchemaError
        When a ledger column is missing or a spreadsheet changed the village codes.
    """
    layer = "corrections"
    if config.path is None:  # pragma: no cover - config_from_dict requires the path
        raise SchemaError("[corrections] path is required")
    table = io.read_table(config.path, encoding=config.encoding, name=layer)
    missing, hints = missing_columns(LEDGER_COLUMNS, table.columns)
    if missing:
        raise SchemaError(
            f"corrections: {config.path} lacks column(s) {missing}{hints}; a ledger needs "
            f"{list(LEDGER_COLUMNS)}"
        )
    out = table.loc[:, list(LEDGER_COLUMNS)].astype("string").apply(lambda s: s.str.strip())
    out["village_code"] = read_codes(
        table["village_code"], source=f"{layer} ({config.path.name})", column="village_code"
    )
    out.insert(0, "row", np.arange(1, len(out) + 1))
    return out.reset_index(drop=True)


def check_ledger(ledger: pd.DataFrame, codes: pd.Series, *, path: object = "") -> pd.DataFrame:
    """Parse and check every ledger row, so that an override is applied exactly as written or
    the run stops.

    Parameters
    ----------
    ledger
        As :func:`read_ledger` returns it.
    codes
        The village codes of the register.
    path
        The ledger file, for the message.

    Returns
    -------
    pandas.DataFrame
        The ledger with ``field`` in lower case and ``new_value`` parsed (a bool for
        ``fibre``, a class name for ``speed_class``).

    Raises
    ------
    SchemaError
        One error listing every row that cannot be applied (the first ten, and how many more).
    """
    problems: list[str] = []
    known = set(codes.dropna())
    field = ledger["field"].str.lower()
    parsed: list[object] = []
    fibre_values = parse_yes_no(ledger["value"].where(ledger["value"].notna(), "?"))
    for i, rec in ledger.iterrows():
        where = f"row {rec['row']}"
        code = rec["village_code"]
        if code is None or pd.isna(code):
            problems.append(f"{where}: no village_code")
        elif code not in known:
            problems.append(f"{where}: village_code {code!r} is not in the register")
        value, wrong = _new_value(rec, field[i], fibre_values[i], where)
        parsed.append(value)
        problems += wrong + _record_problems(rec, where)
    dup = ledger.assign(f=field).duplicated(subset=["village_code", "f"], keep="first")
    for _, rec in ledger[dup & ledger["village_code"].notna()].iterrows():
        problems.append(
            f"row {rec['row']}: a second override of {rec['field']} for {rec['village_code']}"
        )
    if problems:
        shown = "; ".join(problems[:10])
        more = f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise SchemaError(
            f"corrections: {path} cannot be applied as written: {shown}{more}. "
            "Fix these ledger rows (codes, fields, values and reasons are listed in the README)"
        )
    return ledger.assign(field=field, new_value=parsed)


def _new_value(
    rec: pd.Series, field: str, fibre_value: object, where: str
) -> tuple[object, list[str]]:
    """A ledger row's value parsed for its field, and what is wrong with the field or value."""
    if field == "fibre":
        yes = None if pd.isna(fibre_value) else bool(fibre_value)
        return yes, [] if yes is not None else [
            f"{where}: fibre value {rec['value']!r} is not yes/no"
        ]
    if field == "speed_class":
        cls = str(rec["value"]).strip().lower() if pd.notna(rec["value"]) else None
        return cls, [] if cls in SPEED_CLASSES else [
            f"{where}: speed_class value {rec['value']!r} is not one of "
            f"{list(SPEED_CLASSES)}{did_you_mean(rec['value'], SPEED_CLASSES)}"
        ]
    return None, [
        f"{where}: field {rec['field']!r} cannot be corrected; use one of "
        f"{list(FIELDS)}{did_you_mean(rec['field'], FIELDS)}"
    ]


def _record_problems(rec: pd.Series, where: str) -> list[str]:
    """What is wrong with a ledger row's reason, evidence, author and date."""
    problems = []
    reason = rec["reason"]
    if pd.isna(reason) or reason not in REASONS:
        problems.append(
            f"{where}: reason {reason if pd.notna(reason) else ''!r} is not a reason code; "
            f"use one of {list(REASONS)}{did_you_mean(reason, REASONS)}"
        )
    for col in ("evidence", "author"):
        if pd.isna(rec[col]) or not str(rec[col]):
            problems.append(f"{where}: {col} is empty; every override must say it")
    date = rec["date"]
    if pd.isna(date) or pd.to_datetime(date, format="%Y-%m-%d", errors="coerce") is pd.NaT:
        problems.append(f"{where}: date {date if pd.notna(date) else ''!r} is not YYYY-MM-DD")
    return problems


def _describe(rec: pd.Series) -> str:
    value = {True: "yes", False: "no"}.get(rec["new_value"], rec["new_value"])  # type: ignore[call-overload]
    return (
        f"{rec['field']} = {value} ({rec['reason']}; {rec['evidence']}; "
        f"{rec['author']}, {rec['date']}; ledger row {rec['row']})"
    )


def apply_corrections(
    villages: pd.DataFrame, ledger: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply the overrides of a checked ledger to classified villages.

    Parameters
    ----------
    villages
        The classified village table (not modified).
    ledger
        As :func:`check_ledger` returns it.

    Returns
    -------
    tuple of pandas.DataFrame
        A new village table (``fibre`` with ``fibre_basis = "correction"``, ``speed_class``,
        ``meets_targets`` and, with five-way classes, ``speed_counts`` recomputed, and the
        ``corrections`` text column), and the table of applied overrides
        (:data:`APPLIED_COLUMNS`) with each one's value before the override.
    """
    out = villages.copy()
    text = pd.Series([None] * len(out), index=out.index, dtype=object)
    applied = []
    position = {code: i for i, code in enumerate(out["village_code"])}
    for _, rec in ledger.iterrows():
        i = out.index[position[rec["village_code"]]]
        col = rec["field"]
        old = out.at[i, col]
        old = bool(old) if col == "fibre" else old
        out.at[i, col] = rec["new_value"]
        if col == "fibre":
            out.at[i, "fibre_basis"] = "correction"
        note = _describe(rec)
        text[i] = note if text[i] is None else f"{text[i]}; {note}"
        applied.append({**rec.to_dict(), "old_value": old})
    if "fibre" in out.columns:
        out["fibre"] = out["fibre"].astype(bool)
        counted = out["speed_class"] == "meets"
        if "speed_counts" in out.columns and len(out):  # five-way classes: the basis decides
            from ruralcov.capability import counts_for_basis

            counted = pd.Series(counts_for_basis(out["speed_class"],
                                                 basis=str(out["speed_basis"].iloc[0])),
                                index=out.index)
            out["speed_counts"] = counted
        out["meets_targets"] = out["fibre"] & counted
    out["corrections"] = text
    table = pd.DataFrame(applied, columns=[*APPLIED_COLUMNS])
    return out, table.astype(object).reset_index(drop=True)


def applied_issues(applied: pd.DataFrame) -> pd.DataFrame:
    """The findings that record the applied overrides in issues.csv.

    Parameters
    ----------
    applied
        The table of applied overrides (:data:`APPLIED_COLUMNS`).

    Returns
    -------
    pandas.DataFrame
        One ``info`` finding per override (layer ``corrections``, reason
        ``correction_applied``).
    """
    message = pd.Series(
        [
            f"{r['field']} {r['old_value']!s} -> {r['new_value']!s} by {r['reason']}: "
            f"{r['evidence']} ({r['author']}, {r['date']})"
            for _, r in applied.iterrows()
        ],
        dtype=object,
    )
    return row_issues(
        pd.Series(True, index=applied.index),
        layer="corrections",
        reason="correction_applied",
        severity="info",
        message=message,
        codes=applied["village_code"],
        rows=applied["row"].to_numpy(),
    )
