"""Periods given by a column of one tests file (``[speed] period = "quarter"``).

The file's distinct period values are the run's periods (labels sort as text in time order;
the latest is the headline), and each period is analysed from that period's rows only, as if
they were a file of their own (:mod:`ruralcov.trends`). Every reader applies the same rule
through :func:`period_rows`: a row belongs to period ``p`` when its value, as text without
surrounding blanks, equals ``p``. Rows without a period value belong to no period; the
headline run drops them as ``missing_period`` so that, over all periods, every row of the file
is accounted for exactly once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ruralcov import checks, io
from ruralcov.config import SpeedConfig
from ruralcov.errors import SchemaError

__all__ = ["period_labels", "period_rows", "period_text"]


def period_text(values: pa.Array | pa.ChunkedArray | pd.Series) -> pa.Array:
    """Period labels as text (blanks trimmed; empty text is no value).

    Parameters
    ----------
    values
        A period column.

    Returns
    -------
    pyarrow.Array
        Its labels as text, null where a row has none.

    Examples
    --------
    >>> period_text(pd.Series([" 2024Q1", None, "", "2024Q2 "])).to_pylist()
    ['2024Q1', None, None, '2024Q2']
    """
    if isinstance(values, pd.Series):
        values = pa.array(values.astype(object).where(values.notna(), None), from_pandas=True)
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(arr, pa.string())
    text = pc.utf8_trim_whitespace(arr)
    return pc.if_else(pc.equal(text, ""), pa.scalar(None, text.type), text)


def period_rows(values: pa.Array | pa.ChunkedArray | pd.Series, speed: SpeedConfig
                ) -> tuple[np.ndarray, np.ndarray]:
    """The rows of a period column that a run of ``speed.period_value`` reads.

    Parameters
    ----------
    values
        The period column.
    speed
        The ``[speed]`` section: the period read, and whether it is the headline.

    Returns
    -------
    take, missing
        ``take``: the period's rows, plus the rows without a period in the headline run;
        ``missing``: among those, the rows without a period (dropped as ``missing_period``).
    """
    text = period_text(values)
    missing = text.is_null().to_numpy(zero_copy_only=False)
    mine = pc.fill_null(pc.equal(text, speed.period_value), False).to_numpy(zero_copy_only=False)
    take = mine | (missing if speed.period_headline else False)
    return take, missing[take]


def period_labels(speed: SpeedConfig) -> list[str]:
    """The distinct period values of the tests file, sorted (the last is the headline).

    Parameters
    ----------
    speed
        The ``[speed]`` section naming the file and its period column.

    Returns
    -------
    list of str
        The labels, oldest first.

    Raises
    ------
    SchemaError
        When the file has no such column, or no value in it.
    """
    col = speed.period
    where = {"layer": speed.layer, "lon": speed.lon, "lat": speed.lat, "encoding": speed.encoding,
             "name": "speed"}
    plan = io.read_plan(speed.path, **where)
    if plan is not None:
        checks.require_column(speed, "period", plan.columns)
        parts = [pc.unique(period_text(t.column(col))) for t in io.iter_batches(plan, [col])]
        found = pa.chunked_array(parts, pa.string()).unique() if parts else pa.array([])
    else:
        frame, _ = io.read_layer(speed.path, crs=speed.crs, **where)
        checks.require_column(speed, "period", frame.columns)
        found = pc.unique(period_text(frame[col]))
    labels = sorted(v for v in found.to_pylist() if v is not None)
    if not labels:
        raise SchemaError(f"speed: the period column {col!r} of {speed.path} has no values")
    return labels
