"""Speed tests streamed in batches: exact per-village statistics in bounded memory.

The tests file (Parquet or GeoParquet, a folder of Parquet parts, or CSV) is read in batches
with pyarrow (:func:`ruralcov.io.iter_batches`); each batch is checked row by row by the rules
:func:`ruralcov.loaders.load_speed_tests` applies to a whole file (:mod:`ruralcov.checks`:
same issues, same 1-based source rows, rows read = used + dropped), joined to the villages
with :class:`ruralcov.join.PolygonIndex`, and reduced to the kept rows (village, download,
upload, latency, device key) sorted by village, spilled to disk past the buffer; at the end
the statistics are computed exactly, village range by village range. Formats the stream does
not read (GeoPackage, Shapefile, GeoJSON, WKT columns, non-WKB GeoParquet encodings) go
through the loader instead; :func:`supports` says which.

The parts, in the order the data flows through them:

- :mod:`~ruralcov.stream.reading`: the plan of the file, batches read ahead in a thread;
- :mod:`~ruralcov.stream.checking`: each batch checked and joined (:class:`Checker`);
- :mod:`~ruralcov.stream.issues`: the rows each rule found, turned into the issues frame;
- :mod:`~ruralcov.stream.duplicates`: copies of an earlier row outside the villages, and the
  candidate copies compared in every column;
- :mod:`~ruralcov.stream.accumulate`: the kept rows in village-sorted runs, the exact
  statistics (copies and device-day sampling left out village by village);
- :mod:`~ruralcov.stream.driver`: the run that ties them together.
"""

from __future__ import annotations

from ruralcov.stream.accumulate import STAT_COLUMNS, Accumulator, SpillFile
from ruralcov.stream.checking import Checker, Prepared, device_keys, join_batch
from ruralcov.stream.driver import (
    KeptRows,
    StreamedSpeed,
    sample_points,
    sample_tally,
    stream_speed_tests,
    streamed_statistics,
)
from ruralcov.stream.duplicates import DuplicateFinder
from ruralcov.stream.issues import IssueLog
from ruralcov.stream.reading import reuse_arrow_memory, speed_plan, supports

__all__ = [
    "STAT_COLUMNS", "Accumulator", "Checker", "DuplicateFinder", "IssueLog", "KeptRows",
    "Prepared", "SpillFile", "StreamedSpeed", "device_keys", "join_batch", "reuse_arrow_memory",
    "sample_points", "sample_tally", "speed_plan", "stream_speed_tests", "streamed_statistics",
    "supports",
]
