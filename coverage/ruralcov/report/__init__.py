"""The files a run publishes, written from a :class:`~ruralcov.pipeline.CoverageResult`.

One job per module, in the order the data flows:

- :mod:`~ruralcov.report.manifest`: ``manifest.json`` and plain JSON values;
- :mod:`~ruralcov.report.tables`: the tables of a run and the one way a cell of a CSV file
  or a workbook is written (codes as text, ``TRUE``/``FALSE``, rounding, formula injection);
- :mod:`~ruralcov.report.xlsx`: ``report.xlsx``;
- :mod:`~ruralcov.report.html`: ``report.html`` and the page helpers every HTML page of a
  run folder is made of (the maps' index page too);
- :mod:`~ruralcov.report.writer`: the run folder as a whole (:func:`write_run`), which also
  has :mod:`ruralcov.maps` draw the maps.

:mod:`ruralcov.maps` uses the page helpers of :mod:`~ruralcov.report.html`, and the writer
uses the maps: data flows one way (html -> maps -> writer), with no circle.
"""

from __future__ import annotations

from ruralcov.report.html import add_report_section, html_table, page, render_report_html
from ruralcov.report.manifest import build_manifest, json_value, write_manifest
from ruralcov.report.tables import (
    GAP_TABLES,
    for_csv,
    headline_figures,
    neutralise,
    result_tables,
    village_rows,
    write_csv,
    write_tables,
)
from ruralcov.report.writer import (
    ASSETS_FILE,
    CELLS_FILE,
    WRITE_STEPS,
    assets_frame,
    write_contents,
    write_run,
    write_skipped_index,
)
from ruralcov.report.xlsx import cell_values, write_xlsx

__all__ = [
    "ASSETS_FILE",
    "CELLS_FILE",
    "GAP_TABLES",
    "WRITE_STEPS",
    "add_report_section",
    "assets_frame",
    "build_manifest",
    "cell_values",
    "for_csv",
    "headline_figures",
    "html_table",
    "json_value",
    "neutralise",
    "page",
    "render_report_html",
    "result_tables",
    "village_rows",
    "write_contents",
    "write_csv",
    "write_manifest",
    "write_run",
    "write_skipped_index",
    "write_tables",
    "write_xlsx",
]
