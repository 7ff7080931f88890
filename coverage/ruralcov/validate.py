"""Findings about input rows, kept as tables so that nothing is lost silently.

Readers and engine steps return an issues frame (:data:`ISSUE_FIELDS`) alongside their data;
the pipeline concatenates them into ``issues.csv`` and derives the manifest's per-input counts
(rows read = rows used + rows dropped by reason). Frames rather than objects, because a speed
test file can produce hundreds of thousands of findings.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from ruralcov.schema import ISSUE_COLUMNS

SEVERITIES = ("error", "warning", "info")

#: ``row`` is the 1-based data row in the source file (empty for file-level findings);
#: ``dropped`` is True when the row was left out of the analysis because of the finding.
ISSUE_FIELDS: tuple[str, ...] = (*ISSUE_COLUMNS, "dropped")


def no_issues() -> pd.DataFrame:
    """An empty issues frame with the right columns and dtypes."""
    return _typed(pd.DataFrame({c: [] for c in ISSUE_FIELDS}))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.loc[:, list(ISSUE_FIELDS)]
    frame["row"] = frame["row"].astype("Int64")
    frame["dropped"] = frame["dropped"].astype(bool)
    for col in ("severity", "layer", "code", "reason", "message"):
        frame[col] = frame[col].astype(object)
    return frame.reset_index(drop=True)


def issue(
    *,
    layer: str,
    reason: str,
    message: str,
    severity: str = "warning",
    row: int | None = None,
    code: str | None = None,
    dropped: bool = False,
) -> pd.DataFrame:
    """A single finding as a one-row issues frame."""
    return _typed(
        pd.DataFrame(
            {
                "severity": [severity],
                "layer": [layer],
                "row": [row],
                "code": [code],
                "reason": [reason],
                "message": [message],
                "dropped": [dropped],
            }
        )
    )


def row_issues(
    mask: pd.Series | np.ndarray,
    *,
    layer: str,
    reason: str,
    message: str | pd.Series,
    severity: str = "warning",
    codes: pd.Series | None = None,
    rows: pd.Series | np.ndarray | None = None,
    dropped: bool = False,
) -> pd.DataFrame:
    """One finding per True entry of ``mask``.

    ``rows`` gives each entry's 1-based source row; by default the entry's position + 1.
    ``message`` may be a Series aligned with ``mask`` for per-row wording.
    """
    hit = np.asarray(pd.Series(mask).fillna(False).astype(bool))
    n = int(hit.sum())
    if n == 0:
        return no_issues()
    source_rows = np.arange(1, len(hit) + 1) if rows is None else np.asarray(rows)
    msg = np.asarray(message)[hit] if isinstance(message, pd.Series) else [message] * n
    code = [None] * n if codes is None else np.asarray(codes.astype(object))[hit]
    return _typed(
        pd.DataFrame(
            {
                "severity": severity,
                "layer": layer,
                "row": source_rows[hit],
                "code": code,
                "reason": reason,
                "message": msg,
                "dropped": dropped,
            }
        )
    )


def concat_issues(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """All findings in one frame, in the order given."""
    frames = [f for f in frames if len(f)]
    return _typed(pd.concat(frames, ignore_index=True)) if frames else no_issues()


def dropped_counts(issues: pd.DataFrame, layer: str) -> dict[str, int]:
    """Rows dropped per reason for one layer; a row is counted once, under its first reason."""
    hits = issues[(issues["layer"] == layer) & issues["dropped"]]
    hits = hits.drop_duplicates(subset="row", keep="first")
    return {str(k): int(v) for k, v in hits["reason"].value_counts(sort=False).items()}
