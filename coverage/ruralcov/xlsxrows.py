"""The data rows of report.xlsx's table sheets, written as sheet XML directly.

xlsxwriter writes every cell through several Python calls, and a 20,000-village province is
over a million cells, so the data rows are formatted here, a column at a time within a chunk
of rows (:class:`Rows`: the cell values are made per chunk too, so that a national table
never exists as Python objects all at once). The workbook is still made by xlsxwriter
(styles, header rows, column widths and formats, frozen panes, autofilters, the ``about``
sheet); only the data rows of the table sheets are left out of it and spliced into each
sheet's ``<sheetData>`` afterwards, with xlsxwriter's own encoding of inline strings, numbers
and booleans and the style index of each column's format (``<col style=...>``), so that the
file is byte for byte the sheet xlsxwriter would write (checked by the tests).
"""

from __future__ import annotations

import queue
import re
import threading
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
#: Rows formatted at a time (their cell values and XML exist together).
CHUNK = 10_000
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


def _row_templates(columns: Sequence[Sequence[Any]], styles: Sequence[int | None]) -> list[str]:
    """The ``<row>`` elements of some data rows (given column by column) with the row number
    left as :data:`_ROW` ("" for a row without values), numbered once placed."""
    cols = [_cells(c, column_name(j), styles[j]) for j, c in enumerate(columns)]
    return [f'<row r="{_ROW}">{body}</row>' if (body := "".join(cells)) else ""
            for cells in zip(*cols, strict=True)]


def _numbered(templates: Sequence[str], first: int) -> str:
    """Row templates placed from Excel row ``first`` on."""
    return "".join([t.replace(_ROW, str(i)) for i, t in enumerate(templates, first)])


@dataclass(frozen=True)
class Rows:
    """A table's data rows, made a chunk of rows at a time: the cell values of a national
    table (620,573 villages) as Python objects would take gigabytes at once.

    Attributes
    ----------
    n
        Number of data rows.
    width
        Number of columns.
    values
        ``values(a, b)``: rows ``a`` to ``b`` (0-based, ``b`` excluded), column by column
        (None: an empty cell). The same rows give the same values whatever the chunk.
    """

    n: int
    width: int
    values: Callable[[int, int], Sequence[Sequence[Any]]]

    @classmethod
    def of(cls, columns: Sequence[Sequence[Any]]) -> Rows:
        """The rows of columns already made.

        Examples
        --------
        >>> Rows.of([[1, 2, 3], ["a", None, "c"]]).values(1, 3)
        [[2, 3], [None, 'c']]
        """
        return cls(len(columns[0]) if columns else 0, len(columns),
                   lambda a, b: [c[a:b] for c in columns])


def rows_xml(
    rows: Rows,
    styles: Sequence[int | None],
    *,
    first: int = 2,
    chunk: int | None = None,
) -> Iterator[str]:
    """The ``<row>`` elements of a table's data rows, in pieces (memory stays bounded).

    Parameters
    ----------
    rows
        The table's rows.
    styles
        The style index of each column's format (:func:`column_styles`).
    first
        The Excel row of the first data row.
    chunk
        Rows per piece (default :data:`CHUNK`); the XML is the same whatever the chunk.

    Yields
    ------
    str
        The XML of ``chunk`` rows at a time.
    """
    chunk = chunk or CHUNK
    for a in range(0, rows.n, chunk):
        b = min(a + chunk, rows.n)
        yield _numbered(_row_templates(rows.values(a, b), styles), first + a)


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


def splice_rows(path: Path | str, sheets: Mapping[int, Rows | Sequence[Sequence[Any]]]) -> None:
    """Put the data rows into the sheets of the xlsxwriter workbook at ``path``.

    Every other part of the file is copied as it is, with its original zip entry (dates
    included, for reproducibility).

    Parameters
    ----------
    path
        The workbook, written by xlsxwriter with header rows only; replaced.
    sheets
        A worksheet's 0-based index (``Worksheet.index``) -> its data rows (Excel rows 2 ...
        on; row 1, the header, was written by xlsxwriter): :class:`Rows`, or the column
        values.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".rows")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            m = _SHEET.fullmatch(info.filename)
            k = int(m.group(1)) - 1 if m else -1
            if k not in sheets:
                dst.writestr(info, data)
                continue
            rows = sheets[k]
            rows = rows if isinstance(rows, Rows) else Rows.of(rows)
            head, tail = data.decode("utf-8").split("</sheetData>", 1)
            last = _last_row(rows)
            if last:
                ref = f"A1:{column_name(rows.width - 1)}{last + 1}"
                head = _DIMENSION.sub(f'<dimension ref="{ref}"/>', head, count=1)
            # Deflate level 1: a province's sheets are tens of MB of repetitive XML, which
            # higher levels pack only a little smaller for much more time.
            setattr(info, _LEVEL, 1)
            with dst.open(info, "w") as fh:
                _write_behind(fh, _pieces(head, rows_xml(rows, column_styles(head, rows.width)),
                                          tail))
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


def _last_row(rows: Rows) -> int:
    """0-based data row of the last row with a value, plus one (0 when none); made from the
    end a chunk at a time (a table's last row nearly always has values)."""
    for b in range(rows.n, 0, -CHUNK):
        a = max(b - CHUNK, 0)
        columns = rows.values(a, b)
        for i in range(b - a - 1, -1, -1):
            if any(c[i] is not None for c in columns):
                return a + i + 1
    return 0
