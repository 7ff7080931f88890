"""The data rows of report.xlsx's table sheets, written as sheet XML directly.

xlsxwriter writes every cell through several Python calls, and a 20,000-village province is
over a million cells, so the data rows are formatted here, a column at a time. The workbook is
still made by xlsxwriter (styles, header rows, column widths and formats, frozen panes,
autofilters, the ``about`` sheet); only the data rows of the table sheets are left out of it
and spliced into each sheet's ``<sheetData>`` afterwards, with xlsxwriter's own encoding of
inline strings, numbers and booleans and the style index of each column's format
(``<col style=...>``), so that the file is byte for byte the sheet xlsxwriter would write
(checked by the tests).
"""

from __future__ import annotations

import queue
import re
import threading
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

_NEEDS_WORK = re.compile("[&<>_\x00-\x08\x0b-\x1f\ufffe\uffff]")
_ESCAPED = re.compile("(_x[0-9a-fA-F]{4}_)")
_CONTROL = re.compile("([\x00-\x08\x0b-\x1f])")
_COL = re.compile(r'<col min="(\d+)" max="(\d+)"([^>]*)/>')
_STYLE = re.compile(r' style="(\d+)"')
_DIMENSION = re.compile(r'<dimension ref="[^"]*"/>')
_SHEET = re.compile(r"xl/worksheets/sheet(\d+)\.xml")
_STRMAX = 32767  # Excel's cell limit, in UTF-16 units
#: Stands for the row number in a row's XML until the row is placed; never part of a cell (texts
#: write control characters as ``_xHHHH_``).
_ROW = "\x00"
_CHUNK = 10_000  # rows formatted at a time
#: ZipInfo's compression level (public from Python 3.13 on).
_LEVEL = "compress_level" if hasattr(zipfile.ZipInfo(), "compress_level") else "_compresslevel"


def column_name(j: int) -> str:
    """Excel's letters for a column.

    Parameters
    ----------
    j
        The 0-based column.

    Returns
    -------
    str
        Its letters.

    Examples
    --------
    >>> column_name(0), column_name(25), column_name(26), column_name(16383)
    ('A', 'Z', 'AA', 'XFD')
    """
    name = ""
    j += 1
    while j:
        j, r = divmod(j - 1, 26)
        name = chr(65 + r) + name
    return name


def _text(s: str) -> str:
    """A string as xlsxwriter stores it inline: cut to Excel's limit, control characters as
    ``_xHHHH_`` (a literal ``_xHHHH_`` guarded as ``_x005F_xHHHH_``), XML-escaped."""
    if len(s) > _STRMAX // 2 and len(s.encode("utf-16-le")) // 2 > _STRMAX:
        s = s.encode("utf-16-le")[: 2 * _STRMAX].decode("utf-16-le", errors="ignore")
    if _NEEDS_WORK.search(s):
        s = _ESCAPED.sub(r"_x005F\1", s)
        s = _CONTROL.sub(lambda m: f"_x{ord(m.group(1)):04X}_", s)
        s = s.replace("\ufffe", "_xFFFE_").replace("\uffff", "_xFFFF_")
        s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return s


def _text_tail(v: str) -> str:
    """What follows ``<c r=".." s=".."`` for a text cell."""
    t = _text(v)
    space = ' xml:space="preserve"' if t and (t[0].isspace() or t[-1].isspace()) else ""
    return f' t="inlineStr"><is><t{space}>{t}</t></is></c>'


def _cells(values: Sequence[Any], letter: str, style: int | None) -> list[str]:
    """One column's ``<c>`` elements, the row number left as :data:`_ROW` ("" for None).

    A column of one kind (numbers, booleans) is formatted in one comprehension; texts repeat
    a lot (names, classes), so each distinct text is escaped once."""
    ref = f'<c r="{letter}{_ROW}"' + (f' s="{style}"' if style is not None else "")
    kinds = set(map(type, values)) - {type(None)}
    if kinds <= {float, int}:
        return [f"{ref}><v>{v:.16G}</v></c>" if v is not None else "" for v in values]
    if kinds == {bool}:
        return [f'{ref} t="b"><v>{int(v)}</v></c>' if v is not None else "" for v in values]
    tails = {v: _text_tail(v) for v in {v for v in values if isinstance(v, str)}}
    out = []
    for v in values:
        if v is None:
            out.append("")
        elif isinstance(v, str):
            out.append(ref + tails[v])
        elif isinstance(v, bool):
            out.append(f'{ref} t="b"><v>{int(v)}</v></c>')
        else:
            out.append(f"{ref}><v>{v:.16G}</v></c>")
    return out


def _row_templates(columns: Sequence[Sequence[Any]], styles: Sequence[int | None], a: int,
                   b: int) -> list[str]:
    """The ``<row>`` elements of data rows ``a`` to ``b`` with the row number left as
    :data:`_ROW` ("" for a row without values): a row's XML is made once and numbered where it
    is placed (a village's row is placed again in each gap sheet that lists it)."""
    cols = [_cells(c[a:b], column_name(j), styles[j]) for j, c in enumerate(columns)]
    return [f'<row r="{_ROW}">{body}</row>' if (body := "".join(cells)) else ""
            for cells in zip(*cols, strict=True)]


def _numbered(templates: Sequence[str], first: int) -> str:
    """Row templates placed from Excel row ``first`` on."""
    return "".join([t.replace(_ROW, str(i)) for i, t in enumerate(templates, first)])


def rows_xml(
    columns: Sequence[Sequence[Any]],
    styles: Sequence[int | None],
    *,
    first: int = 2,
    chunk: int = _CHUNK,
    keep: dict[int, str] | None = None,
) -> Iterator[str]:
    """The ``<row>`` elements of a table's data rows, in pieces (memory stays bounded).

    Parameters
    ----------
    columns
        The column values (None: an empty cell).
    styles
        The style index of each column's format (:func:`column_styles`).
    first
        The Excel row of the first data row.
    chunk
        Rows per piece.
    keep
        0-based data rows whose templates (row number not yet placed) are wanted for reuse
        in another sheet: they are put into this dict, under their row.

    Yields
    ------
    str
        The XML of ``chunk`` rows at a time.
    """
    n = len(columns[0]) if columns else 0
    wanted = np.array(sorted(keep), dtype=np.int64) if keep else np.empty(0, np.int64)
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        templates = _row_templates(columns, styles, a, b)
        for p in wanted[np.searchsorted(wanted, a):np.searchsorted(wanted, b)].tolist():
            keep[p] = templates[p - a]  # type: ignore[index]
        yield _numbered(templates, first + a)


def column_styles(sheet_xml: str, n_columns: int) -> list[int | None]:
    """The style index of each column's format, so that spliced cells carry it as
    xlsxwriter's own cells would.

    Parameters
    ----------
    sheet_xml
        The sheet's XML up to its data rows (its ``<cols>``).
    n_columns
        Number of columns of the table.

    Returns
    -------
    list
        Per column, its style index, or None for a column without a format.
    """
    styles: list[int | None] = [None] * n_columns
    for m in _COL.finditer(sheet_xml):
        style = _STYLE.search(m.group(3))
        if style is not None:
            for j in range(int(m.group(1)) - 1, min(int(m.group(2)), n_columns)):
                styles[j] = int(style.group(1))
    return styles


def splice_rows(
    path: Path | str,
    sheets: Mapping[int, Sequence[Sequence[Any]]],
    *,
    subsets: Mapping[int, tuple[int, Sequence[int] | np.ndarray]] | None = None,
) -> None:
    """Put the data rows into the sheets of the xlsxwriter workbook at ``path``.

    Every other part of the file is copied as it is, with its original zip entry (dates
    included, for reproducibility).

    Parameters
    ----------
    path
        The workbook, written by xlsxwriter with header rows only; replaced.
    sheets
        A worksheet's 0-based index (``Worksheet.index``) -> its column values (rows 2 ... on;
        row 1, the header, was written by xlsxwriter).
    subsets
        A worksheet whose rows are rows of an earlier one (same columns and formats: a gap
        list of villages) -> that sheet's index and the 0-based positions of its rows there;
        their XML is reused.

    Raises
    ------
    ValueError
        When a subset's rows lie outside its sheet, its sheet is not a plain sheet before it,
        or the column formats differ.
    """
    path = Path(path)
    subsets = subsets or {}
    tmp = path.with_name(path.name + ".rows")
    kept: dict[int, dict[int, str]] = {}  # source sheet -> data row -> template
    done: dict[int, list[int | None]] = {}  # sheets written so far -> their column styles
    for k, (source, positions) in subsets.items():
        n = len(sheets[source][0]) if sheets.get(source) else 0
        if len(positions) and not 0 <= min(positions) <= max(positions) < n:
            raise ValueError(f"sheet {k}: rows outside the {n} rows of sheet {source}")
        kept.setdefault(source, {}).update(dict.fromkeys(positions, ""))
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            m = _SHEET.fullmatch(info.filename)
            k = int(m.group(1)) - 1 if m else -1
            if k not in sheets and k not in subsets:
                dst.writestr(info, data)
                continue
            source = subsets[k][0] if k in subsets else k
            if k in subsets and (source in subsets or source not in done):
                raise ValueError(f"sheet {k}: its rows come from sheet {source}, which is not a "
                                 "plain sheet before it")
            columns = sheets[source]
            head, tail = data.decode("utf-8").split("</sheetData>", 1)
            styles = column_styles(head, len(columns))
            if k in subsets:
                if styles != done[source]:
                    raise ValueError(f"sheet {k}: column formats differ from sheet {source}")
                templates = [kept[source][p] for p in subsets[k][1]]
                last = max((i + 1 for i, t in enumerate(templates) if t), default=0)
                rows: Iterator[str] = (_numbered(templates[a:a + _CHUNK], 2 + a)
                                       for a in range(0, len(templates), _CHUNK))
            else:
                last = _last_row(columns)
                rows = rows_xml(columns, styles, keep=kept.get(k))
            done[k] = styles
            if last:
                ref = f"A1:{column_name(len(columns) - 1)}{last + 1}"
                head = _DIMENSION.sub(f'<dimension ref="{ref}"/>', head, count=1)
            # Deflate level 1: a province's sheets are tens of MB of repetitive XML, which
            # higher levels pack only a little smaller for much more time.
            setattr(info, _LEVEL, 1)
            with dst.open(info, "w") as fh:
                _write_behind(fh, _pieces(head, rows, tail))
    tmp.replace(path)


def _pieces(head: str, rows: Iterator[str], tail: str) -> Iterator[str]:
    """The sheet's XML: everything up to the rows, the rows, the rest."""
    yield head
    yield from rows
    yield "</sheetData>" + tail


def _write_behind(fh: Any, pieces: Iterator[str]) -> None:
    """Write the encoded ``pieces`` to ``fh`` from a second thread: zlib (deflate, CRC)
    releases the GIL, so compressing overlaps with formatting the next rows. The same writes
    in the same order, so the same bytes."""
    q: queue.Queue = queue.Queue(maxsize=4)
    failed: list[BaseException] = []

    def work() -> None:
        while (data := q.get()) is not None:
            if not failed:
                try:
                    fh.write(data)
                except BaseException as exc:  # handed to the caller
                    failed.append(exc)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    try:
        for piece in pieces:
            if failed:
                break
            q.put(piece.encode("utf-8"))
    finally:
        q.put(None)
        t.join()
    if failed:
        raise failed[0]


def _last_row(columns: Sequence[Sequence[Any]]) -> int:
    """0-based data row of the last row with a value (0 when none)."""
    n = len(columns[0]) if columns else 0
    for i in range(n - 1, -1, -1):
        if any(c[i] is not None for c in columns):
            return i + 1
    return 0
