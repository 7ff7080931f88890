"""Units of speed: the one place that converts download/upload values to Mbit/s and decides
whether a source's downloads can be in the unit it declares.

Every engine that reads per-test records (the whole-file loader
:func:`ruralcov.loaders.load_speed_tests`, the stream :class:`ruralcov.stream.Checker` and the
Dask engine, which reuses the stream's checker) converts with :func:`to_mbps`, marks a row
``absurd_speed`` with :func:`absurd` (through :func:`ruralcov.checks.download_status`), counts
its checked rows in a :class:`SpeedTally` (:func:`ruralcov.checks.tally`) and stops with
:func:`check_plausible`; so the three give the same rows, issues and decision.

Why a stop and not only row issues: a column in kbit/s read as Mbit/s multiplies every value
by 1000. Most rows then exceed :data:`MAX_PLAUSIBLE_MBPS` and are dropped as ``absurd_speed``;
the survivors are the slowest tests (below 10 Mbit/s in truth, read as up to 10,000), which
publish slow villages as meeting the target. Row by row nothing looks wrong with them; only the
source as a whole shows the mistake, by two rules:

- **share**: more than :data:`ABSURD_SHARE` (1 %) of the checked rows, and at least
  :data:`ABSURD_MIN_ROWS` (10) rows, are above 10 Gbit/s. A clean source has such rows only as
  stray glitches (none in the demo's 650,000 tests; the bad-input catalogue plants one), while
  a unit mistake puts most rows there (kbit/s read as Mbit/s: every test faster than 10 Mbit/s),
  and a file mixing units puts the share of the other unit there. The minimum count keeps a
  small source with one or two stray values running (1 of 33 rows is 3 %).
- **median**: the median download of the checked rows lies outside
  :data:`MEDIAN_RANGE_MBPS` (0.1 to 2,000 Mbit/s). Real sources' medians lie within: mobile
  and fixed tests in 2020s networks have medians of a few to a few hundred Mbit/s; a gigabit
  plan tests near 940, and no source's *median* test reaches 2 Gbit/s, while 0.1 Mbit/s
  (100 kbit/s) is below what GPRS/EDGE deliver. Mistakes by a factor of 1000 land outside:
  kbit/s read as Mbit/s puts a median of 2 Mbit/s or more above 2,000; Mbit/s declared as
  kbit/s (divided by 1000) puts a median under 100 Mbit/s below 0.1, bit/s read as Mbit/s
  (×10^6) everything above.

"Checked rows" are those with a location and a numeric, non-negative download, absurd ones
included: the absurd rows are the evidence, and the median of the survivors alone is the
median of the slowest tests. The median comes from a histogram of the checked downloads
(:data:`BINS_PER_DECADE` bins per decade of Mbit/s, 2.3 % wide) filled batch by batch and
merged across Dask partitions, so the decision is taken on the complete counts whatever the
engine. The pipeline also applies the same rules to the first 20,000 rows of a streamed file
(:func:`ruralcov.stream.sample_tally`) before the long stream starts: a file in the wrong unit
stops in seconds; one whose first rows are right and later ones not stops at the end of the
stream; one whose first rows are in another unit than the rest stops early (it mixes units).

Capability tables (:mod:`ruralcov.capability`) take the same ``download_unit`` and the same
rules (a table in kbit/s read as Mbit/s would make every village capable); their rows above
10 Gbit/s are counted for the rules but not dropped, as before.

What the rules cannot see: a value that is plausible in two units. kbit/s read as Mbit/s with
a median under 2 Mbit/s in truth (and under 1 % of tests above 10 Mbit/s), or Mbit/s declared
as kbit/s with a true median above 100 Mbit/s (then villages turn ``below``, never falsely
``meets``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from ruralcov.config import DOWNLOAD_UNITS
from ruralcov.errors import UnitError

__all__ = ["MAX_PLAUSIBLE_MBPS", "SpeedTally", "absurd", "absurd_message", "check_plausible",
           "to_mbps"]

#: Values of one unit per Mbit/s, for each ``[speed] download_unit``; the default is ``mbps``.
PER_MBPS: dict[str, float] = dict(zip(DOWNLOAD_UNITS, (1.0, 1e3, 1e6), strict=True))
NAMES = {"mbps": "Mbit/s", "kbps": "kbit/s", "bps": "bit/s"}

#: Download speeds above this (Mbit/s) are rejected row by row (``absurd_speed``): 10 Gbit/s is
#: beyond any access line (XGS-PON delivers 10 Gbit/s shared), so such values are unit mistakes.
MAX_PLAUSIBLE_MBPS = 10_000.0
#: A source whose absurd rows are more than this share of its checked rows ...
ABSURD_SHARE = 0.01
#: ... and at least this many stops the run (fewer are stray values, reported row by row).
ABSURD_MIN_ROWS = 10
#: A source's median download (Mbit/s) outside this range stops the run.
MEDIAN_RANGE_MBPS = (0.1, 2_000.0)

#: The histogram: bins of 1/100 decade from 10^LOW_DECADE Mbit/s; bin 0 holds zero and
#: anything below, the last bin anything above 10^HIGH_DECADE.
BINS_PER_DECADE = 100
LOW_DECADE, HIGH_DECADE = -9, 15
N_BINS = (HIGH_DECADE - LOW_DECADE) * BINS_PER_DECADE + 2


V = TypeVar("V")  # a numpy array or a pandas Series of values


def factor(unit: str | None) -> float:
    """Values per Mbit/s of a download unit.

    Parameters
    ----------
    unit
        ``mbps``, ``kbps`` or ``bps`` (None: ``mbps``).

    Returns
    -------
    float
        1, 1,000 or 1,000,000.

    Examples
    --------
    >>> factor("kbps")
    1000.0
    """
    return PER_MBPS[unit or "mbps"]


def to_mbps(values: V, unit: str | None) -> V:
    """Download or upload values of ``unit`` in Mbit/s (the input itself for Mbit/s).

    Divided, not multiplied by 0.001: a value written as 12000 kbit/s gives exactly the
    float of 12 Mbit/s, so a converted source classifies exactly as the same source in Mbit/s.

    Parameters
    ----------
    values
        A numpy array or a pandas Series.
    unit
        Their unit (None: ``mbps``).

    Returns
    -------
    array or Series
        The values in Mbit/s.

    Examples
    --------
    >>> to_mbps(np.array([12000.0]), "kbps")
    array([12.])
    """
    f = factor(unit)
    return values if f == 1.0 else values / f  # type: ignore[operator]


def absurd(download_mbps: np.ndarray) -> np.ndarray:
    """Row check: a download above :data:`MAX_PLAUSIBLE_MBPS`.

    Parameters
    ----------
    download_mbps
        Downloads in Mbit/s.

    Returns
    -------
    numpy.ndarray
        True for the absurd ones (False for NaN).

    Examples
    --------
    >>> absurd(np.array([9_000.0, 25_000.0, np.nan])).tolist()
    [False, True, False]
    """
    with np.errstate(invalid="ignore"):
        return np.asarray(download_mbps > MAX_PLAUSIBLE_MBPS, dtype=bool)


def absurd_message(column: str, unit: str | None) -> str:
    """The ``absurd_speed`` issue's message.

    Parameters
    ----------
    column
        The download column.
    unit
        Its declared unit.

    Returns
    -------
    str
        The message, naming the unit the values were read in when not Mbit/s.
    """
    read = f" (read as {NAMES[unit]})" if unit and unit != "mbps" else ""
    return (f"{column!r}{read} is above {MAX_PLAUSIBLE_MBPS:,.0f} Mbps (10 Gbit/s), beyond any "
            "access line; probably kbit/s or bit/s instead of Mbit/s")


def _bins(values: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.floor((np.log10(values) - LOW_DECADE) * BINS_PER_DECADE) + 1
    return np.clip(np.nan_to_num(k, nan=0.0, neginf=0.0), 0, N_BINS - 1).astype(np.int64)


def _bin_value(k: int) -> float:
    """A representative of bin ``k``: its geometric centre (0 for the bottom bin)."""
    if k == 0:
        return 0.0
    return 10.0 ** (LOW_DECADE + (min(k, N_BINS - 2) - 0.5) / BINS_PER_DECADE)


@dataclass
class SpeedTally:
    """Counts of a source's checked downloads (Mbit/s): all of them and the absurd ones, each
    as a histogram; added batch by batch, merged across partitions with ``+``."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros((2, N_BINS), np.int64))

    @classmethod
    def of(cls, download_mbps: np.ndarray, checked: np.ndarray) -> SpeedTally:
        """The tally of one batch.

        Parameters
        ----------
        download_mbps
            Downloads in Mbit/s.
        checked
            The rows counted: those with a location and a numeric, non-negative download.

        Returns
        -------
        SpeedTally
            Their counts.
        """
        values = np.asarray(download_mbps, dtype=np.float64)[np.asarray(checked, dtype=bool)]
        bins = _bins(values)
        out = cls()
        out.counts[0] = np.bincount(bins, minlength=N_BINS)
        out.counts[1] = np.bincount(bins[absurd(values)], minlength=N_BINS)
        return out

    def __add__(self, other: SpeedTally) -> SpeedTally:
        return SpeedTally(self.counts + other.counts)

    @property
    def checked(self) -> int:
        """Rows counted."""
        return int(self.counts[0].sum())

    @property
    def absurd(self) -> int:
        """Rows counted above :data:`MAX_PLAUSIBLE_MBPS`."""
        return int(self.counts[1].sum())

    def median(self, *, of_absurd: bool = False) -> float:
        """The median of the checked rows, or of the absurd ones.

        Parameters
        ----------
        of_absurd
            Of the absurd rows only.

        Returns
        -------
        float
            Mbit/s, to the bin (2.3 %); NaN without rows.
        """
        counts = self.counts[1 if of_absurd else 0]
        n = int(counts.sum())
        if n == 0:
            return math.nan
        return _bin_value(int(np.searchsorted(np.cumsum(counts), (n + 1) / 2)))


def likely_unit(value: float) -> str | None:
    """The unit in which a median download, as written in the file, is plausible.

    Parameters
    ----------
    value
        The median as written.

    Returns
    -------
    str or None
        The unit whose Mbit/s lie in :data:`MEDIAN_RANGE_MBPS`, nearest its middle (in
        decades); None when none does.

    Examples
    --------
    >>> likely_unit(20_000.0)
    'kbps'
    """
    lo, hi = MEDIAN_RANGE_MBPS
    middle = math.log10(lo * hi) / 2
    fits = [(abs(math.log10(value / f) - middle), u) for u, f in PER_MBPS.items()
            if value > 0 and lo <= value / f <= hi]
    return min(fits)[1] if fits else None


def _number(value: float) -> str:
    """Three significant digits (the median is known to its 2.3 % bin), with thousands."""
    value = float(f"{value:.3g}")
    return f"{value:,.0f}" if value >= 100 else f"{value:g}"


def check_plausible(tally: SpeedTally, *, column: str, path: Path | str, unit: str | None,
                    sample: bool = False, layer: str = "speed") -> None:
    """Stop (:class:`~ruralcov.errors.UnitError`) when the downloads cannot be in ``unit``.

    The rules are the module's: more than 1 % (and at least 10) of the checked rows above
    10 Gbit/s, or a median outside 0.1 to 2,000 Mbit/s. The one-line message names the file,
    the column, what was seen, the unit the values most likely are in and the setting.

    Parameters
    ----------
    tally
        The counts of the checked downloads.
    column, path
        The download column and the file, named by the message.
    unit
        The declared ``download_unit`` (None: the default, Mbit/s).
    sample
        The tally is of the first rows only (the wording says so).
    layer
        ``speed`` (tests) or ``capability[i]``.

    Raises
    ------
    UnitError
        When the downloads cannot be in ``unit``.
    """
    n, bad = tally.checked, tally.absurd
    if n == 0:
        return
    median = tally.median()
    lo, hi = MEDIAN_RANGE_MBPS
    many = bad >= ABSURD_MIN_ROWS and bad > ABSURD_SHARE * n
    off = not lo <= median <= hi
    if not (many or off):
        return
    declared = unit or "mbps"
    rows = f"first {n:,} checked rows" if sample else f"{n:,} checked rows"
    seen = f"the median of its {rows} is {_number(median)} Mbit/s"
    if bad:
        seen += (f" and {bad:,} ({bad / n:.1%}) are above {MAX_PLAUSIBLE_MBPS:,.0f} Mbit/s "
                 "(10 Gbit/s)")
    # What the values are as written: the median, or (a plausible median with many absurd
    # rows: the file may mix units) the median of the absurd rows.
    written = (median if off else tally.median(of_absurd=True)) * PER_MBPS[declared]
    likely = likely_unit(written)
    section = "[speed]" if layer == "speed" else "its [[speed]] block"
    head = (f"{layer}: the download column {column!r} of {path} does not read as "
            f'{NAMES[declared]} (download_unit = "{declared}"'
            f"{', the default' if unit is None else ''}): {seen}")
    if off:
        plausible = f"plausible medians are {lo:g} to {hi:,.0f} Mbit/s"
    else:
        plausible = (f"more than {ABSURD_SHARE:.0%} of a source above 10 Gbit/s is not stray "
                     "errors")
    if likely is None:
        fix = (f"no unit of {', '.join(PER_MBPS)} makes its median plausible: check that "
               f'download = "..." in {section} names the download speed column')
    else:
        does = ("the default" if likely == "mbps"
                else "it converts the download and upload columns")
        fix = (f'the values look like {NAMES[likely]}: set download_unit = "{likely}" in '
               f"{section} ({does})")
        if not off:
            fix += "; if the file mixes units, convert it to one"
    raise UnitError(f"{head}; {plausible}; {fix}")
