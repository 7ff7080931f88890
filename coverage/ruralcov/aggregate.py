"""Shares and gaps per area (province, city, county, township) over the whole register.

Shares are divided by every administrative village of the register in the area, never by the
villages that joined. The gap to target is computed in exact integer arithmetic from the target
as a fraction (0.98 -> 49/50), so floating-point error never adds or removes a village.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd

from ruralcov.schema import SUMMARY_COLUMNS


def target_fraction(share: float | Fraction) -> Fraction:
    """The target as an exact fraction of its decimal text: 0.98 -> 49/50, not 0.97999...

    A float is read by its shortest decimal text (``repr``), which is what the TOML said for
    any value a TOML float can hold; a :class:`~fractions.Fraction` is kept as it is.

    Parameters
    ----------
    share
        The target share, e.g. ``[targets] fibre_share``.

    Returns
    -------
    fractions.Fraction
        The exact value the decimal text means.

    Examples
    --------
    >>> target_fraction(0.98), target_fraction(0.9800000000000001)
    (Fraction(49, 50), Fraction(9800000000000001, 10000000000000000))
    >>> target_fraction(1e-30) == Fraction(1, 10**30)
    True
    """
    if isinstance(share, Fraction):
        return share
    return Fraction(repr(float(share)))


def gap_villages(villages: Any, fibre_villages: Any, target: Fraction) -> Any:
    """``max(0, ceil(target * villages) - fibre_villages)``, exactly, element-wise.

    The one implementation of the gap rule: every gap and every "target met" (gap 0) of
    ruralcov comes from here. The products are Python integers, never int64: a target such
    as 0.9800000000000001 is 9800000000000001/10**16, and its product with a few thousand
    villages no longer fits 64 bits (numpy would wrap it round with only a warning). Arrays
    of counts (at most one element per area) are done in a loop and returned as int64, which
    holds any gap (it is at most the number of villages).

    Parameters
    ----------
    villages
        Administrative villages of an area (a count or an array of counts).
    fibre_villages
        Those with fibre (same shape, or broadcast).
    target
        The target share, exact (:func:`target_fraction`).

    Returns
    -------
    int or numpy.ndarray
        The villages still to connect: an int for counts, an int64 array for arrays.

    Examples
    --------
    >>> gap_villages(100, 97, Fraction(49, 50)), gap_villages(50, 49, Fraction(49, 50))
    (1, 0)
    >>> gap_villages(np.array([1, 101]), np.array([0, 98]), Fraction(49, 50))
    array([1, 1])
    >>> gap_villages(2000, 1960, target_fraction(0.9800000000000001))
    1
    """
    num, den = target.numerator, target.denominator

    def one(n: Any, fibre: Any) -> int:
        return max(0, -(-int(n) * num // den) - int(fibre))

    if np.ndim(villages) == 0 and np.ndim(fibre_villages) == 0:
        return one(villages, fibre_villages)
    n_arr, f_arr = np.broadcast_arrays(np.asarray(villages), np.asarray(fibre_villages))
    gaps = [one(n, f) for n, f in zip(n_arr.ravel().tolist(), f_arr.ravel().tolist(), strict=True)]
    return np.asarray(gaps, dtype=np.int64).reshape(n_arr.shape)


def target_met(villages: Any, fibre_villages: Any, target: Fraction) -> Any:
    """True where the fibre share reaches ``target`` exactly.

    The gap of :func:`gap_villages` is 0 (a share of exactly 98 % meets 98 %, and does not meet
    0.9800000000000001). Compare shares with the target through this, never as floats: two
    different exact values can round to the same float.

    Parameters
    ----------
    villages, fibre_villages, target
        As for :func:`gap_villages`.

    Returns
    -------
    bool or numpy.ndarray
        A bool for counts, a boolean array for arrays.

    Examples
    --------
    >>> target_met(50, 49, Fraction(49, 50)), target_met(50, 49, target_fraction(0.98 + 1e-16))
    (True, False)
    """
    gap = gap_villages(villages, fibre_villages, target)
    return gap == 0 if np.ndim(gap) else bool(gap == 0)


def _share(part: pd.Series, whole: pd.Series) -> pd.Series:
    return (part / whole.where(whole > 0)).astype(float)


def _speed_counts(villages: pd.DataFrame) -> pd.Series:
    """Villages counted towards the speed share: class ``meets``, or with capability records
    the ``speed_counts`` column of the configured basis (:mod:`ruralcov.capability`)."""
    if "speed_counts" in villages.columns:
        return villages["speed_counts"].fillna(False).astype(bool)
    return villages["speed_class"] == "meets"


def summarise(
    villages: pd.DataFrame,
    *,
    level: str,
    fibre_target: float,
    names: pd.Series | None = None,
) -> pd.DataFrame:
    """The shares and gaps of every area of one level.

    Every area with any register entry appears, even with no administrative village (its
    shares are then empty): an area never drops out of a table for lack of villages.

    Parameters
    ----------
    villages
        The village table: ``kind``, ``fibre``, ``has_geometry``, ``speed_class`` (and
        ``speed_counts`` with capability records) and ``<level>_code``.
    level
        One of :data:`~ruralcov.schema.LEVELS`.
    fibre_target
        The fibre target share; gaps are computed from it exactly (:func:`gap_villages`).
    names
        Area names by code (None: names left empty).

    Returns
    -------
    pandas.DataFrame
        One row per area with :data:`~ruralcov.schema.SUMMARY_COLUMNS`, in code order.
    """
    key = f"{level}_code"
    frame = villages.loc[villages[key].notna()]
    is_village = frame["kind"] == "village"
    is_community = frame["kind"] == "community"
    meets = _speed_counts(frame)
    parts = pd.DataFrame(
        {
            "code": frame[key],
            "villages": is_village,
            "villages_with_geometry": is_village & frame["has_geometry"].astype(bool),
            "fibre_villages": is_village & frame["fibre"].astype(bool),
            "speed_meets": is_village & meets,
            "speed_below": is_village & ~meets & (frame["speed_class"] != "insufficient_data"),
            "speed_insufficient": is_village & (frame["speed_class"] == "insufficient_data"),
            "communities": is_community,
            "communities_speed_meets": is_community & meets,
        }
    )
    out = parts.groupby("code", sort=True).sum().astype(np.int64).reset_index()
    out.insert(0, "level", level)
    name_map = names if names is not None else pd.Series(dtype=object)
    out.insert(2, "name", out["code"].map(name_map).astype(object))
    out["fibre_share"] = _share(out["fibre_villages"], out["villages"])
    out["fibre_target"] = float(fibre_target)
    out["fibre_gap_villages"] = gap_villages(
        out["villages"].to_numpy(), out["fibre_villages"].to_numpy(), target_fraction(fibre_target)
    )
    out["speed_share"] = _share(out["speed_meets"], out["villages"])
    out["communities_speed_share"] = _share(out["communities_speed_meets"], out["communities"])
    return out.loc[:, list(SUMMARY_COLUMNS)]


def headline(villages: pd.DataFrame, *, fibre_target: float) -> dict[str, Any]:
    """The overall figures over the whole register, for the manifest and the report.

    Parameters
    ----------
    villages
        The village table (the columns of :func:`summarise`, ``fibre_nearby``,
        ``meets_targets`` and ``tests``).
    fibre_target
        The fibre target share.

    Returns
    -------
    dict
        Counts, shares (None where the denominator is 0), the gap and whether the target is
        met, as plain Python values (JSON-ready).
    """
    kind = villages["kind"]
    is_village = kind == "village"
    is_community = kind == "community"
    fibre = int((is_village & villages["fibre"].astype(bool)).sum())
    n = int(is_village.sum())
    n_comm = int(is_community.sum())
    cls = villages["speed_class"]
    counts = _speed_counts(villages)
    comm_meets = int((is_community & counts).sum())
    gap = gap_villages(n, fibre, target_fraction(fibre_target))
    return {
        "register_units": len(villages),
        "villages": n,
        "communities": n_comm,
        "other_units": int((kind == "other").sum()),
        "villages_with_geometry": int((is_village & villages["has_geometry"]).sum()),
        "fibre_villages": fibre,
        "fibre_share": fibre / n if n else None,
        "fibre_target": float(fibre_target),
        "fibre_gap_villages": gap,
        "fibre_target_met": gap == 0,
        "fibre_nearby_villages": int((is_village & villages["fibre_nearby"]).sum()),
        "speed_meets": int((is_village & counts).sum()),
        "speed_below": int((is_village & ~counts & (cls != "insufficient_data")).sum()),
        "speed_insufficient": int((is_village & (cls == "insufficient_data")).sum()),
        "speed_share": int((is_village & counts).sum()) / n if n else None,
        "communities_speed_meets": comm_meets,
        "communities_speed_share": comm_meets / n_comm if n_comm else None,
        "meets_targets_villages": int((is_village & villages["meets_targets"]).sum()),
        "tests_used": int(villages["tests"].sum()),
    }
