"""Loaders: how each input's rows are read into the standard columns."""

from __future__ import annotations

import re
import tempfile
import unicodedata
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ruralcov.config import FibreConfig
from ruralcov.loaders import NOT_OPERATIONAL_STATUSES, load_fibre


def reference_key(text: str | None) -> str | None:
    """The status comparison form written out from its definition, for the property below."""
    if text is None:
        return None
    folded = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"[\s_\-\u2010-\u2015\u2212]+", "_", folded).strip("_") or None


OPERATIONAL = ("operational", "in_service")
KNOWN_NOT = {reference_key(s) for s in NOT_OPERATIONAL_STATUSES}


def _spelt(word: str, flips: list[bool], sep: str, wide: bool, pad: str) -> str:
    """``word`` as another system may spell it: case, separators, full-width, blanks around."""
    text = "".join(c.upper() if f else c for c, f in zip(word, flips * len(word), strict=False))
    text = text.replace("_", sep)
    if wide:  # the full-width forms of ASCII letters and signs (U+FF01..U+FF5E)
        text = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)
    return pad + text + pad


variants = st.builds(
    _spelt,
    st.sampled_from(["operational", "in_service", "planned", "under_construction", "in servce",
                     "out_of_service", "在建"]),
    st.lists(st.booleans(), min_size=1, max_size=5),
    st.sampled_from(["_", " ", "-", "  ", " - ", "\u3000", "\t", "＿"]),
    st.booleans(),
    st.sampled_from(["", " ", "\u3000"]),
)
statuses = st.one_of(
    variants,
    st.none(),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(statuses, min_size=1, max_size=12))
def test_every_status_is_counted_or_known_or_reported(values):
    """Exactly one of: counted as operational, known not operational, reported unknown."""
    frame = pd.DataFrame(
        {
            "asset_id": [f"A{i}" for i in range(len(values))],
            "status": pd.Series(values, dtype=object),
            "lon": [112.5 + 0.001 * i for i in range(len(values))],
            "lat": 37.8,
        }
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "aps.parquet"
        frame.to_parquet(path)
        f = FibreConfig(path=path, kind="access_points", status="status", crs="EPSG:4326",
                        operational=OPERATIONAL)
        loaded, _ = load_fibre(f, 0, pd.Series([], dtype=object))
    counted = dict(zip(loaded.frame["asset_id"], loaded.frame["operational"], strict=True))
    issues = loaded.issues
    reported = set(issues.loc[issues["reason"] == "unknown_status", "code"])
    for i, value in enumerate(values):
        key = reference_key(value)
        op = bool(counted[f"A{i}"])
        known_not = key in KNOWN_NOT and not op
        unknown = f"A{i}" in reported
        assert op + known_not + unknown == 1, (value, op, known_not, unknown)
        assert op == (key in OPERATIONAL), value
