"""Presets of published speed sources: ``preset = "..."`` in a ``[[speed]]`` block fills the
kind, column names, units and thresholds of a known export, so that a user does not retype
(and mistype) them. Keys the block gives itself win over the preset's.

``mlab_ndt``: rows of M-Lab's NDT unified views (BigQuery ``measurement-lab.ndt.unified_downloads``)
as ``kind = "tests"``. Those views are nested (``a.MeanThroughputMbps``, ``client.Geo.Latitude``);
an export flattens the names with dots (pandas ``json_normalize``, the names as BigQuery shows
them) or with underscores (``SELECT a.MeanThroughputMbps AS a_MeanThroughputMbps``): both are
read, whichever the file has (:func:`resolve_columns`). The views carry no device or client id
(the client IP is not exported), so the preset has no device column and ``min_devices = 0``:
a village needs ``min_tests`` tests, whoever ran them, and the run says so in ``issues.csv``
(:func:`note`). Download and upload tests are separate rows of separate views with no key to
pair them, so the preset reads the download view; a file whose name says ``upload`` is refused
(its throughput would be read as download).

``fcc_bdc``: the FCC Broadband Data Collection's location-level fixed availability files
(``provider_id, brand_name, location_id, technology, max_advertised_download_speed,
max_advertised_upload_speed, low_latency, business_residential_code, ...``) as
``kind = "capability"``. The public files have no coordinates: the user joins ``latitude`` and
``longitude`` from the Broadband Serviceable Location Fabric by ``location_id``. Rows are
placed in villages by their point (``code = ""``, :func:`ruralcov.capability.load_capability`);
the numeric technology codes become the classes of :data:`BDC_TECHNOLOGY`, and only the
classes of ``technologies`` count (default: the terrestrial technologies of
:data:`BDC_COUNTED`; satellite is advertised at nearly every location and would make every
village capable).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import PurePath
from typing import Any

from ruralcov.errors import ConfigError, SchemaError, did_you_mean

__all__ = ["BDC_COUNTED", "BDC_TECHNOLOGY", "LOCATION_ID", "PRESETS", "check", "note",
           "resolve_columns", "technology_classes", "with_preset"]

#: FCC BDC fixed technology code -> ruralcov's technology class (the ``technology`` of a
#: capability record, ``capability_technology`` of a village).
BDC_TECHNOLOGY: dict[int, str] = {
    0: "other",
    10: "copper",  # xDSL, ethernet over copper, T-1
    40: "cable",  # coaxial cable / HFC (DOCSIS)
    50: "fibre",  # fibre to the premises (not to the curb)
    60: "satellite_gso",
    61: "satellite_ngso",
    70: "fixed_wireless_unlicensed",
    71: "fixed_wireless_licensed",
    72: "fixed_wireless_lbr",  # licensed-by-rule (CBRS GAA)
}
#: The classes an ``fcc_bdc`` source counts unless ``technologies`` says otherwise: wired
#: lines and fixed wireless on licensed or licensed-by-rule spectrum (the "reliable" services
#: of the US BEAD programme). Satellite and unlicensed fixed wireless are read and left out.
BDC_COUNTED: tuple[str, ...] = ("fibre", "cable", "copper", "fixed_wireless_licensed",
                                "fixed_wireless_lbr")

PRESETS: dict[str, dict[str, Any]] = {
    "mlab_ndt": {
        "kind": "tests",
        "lon": "client.Geo.Longitude",
        "lat": "client.Geo.Latitude",
        "crs": "EPSG:4326",
        "download": "a.MeanThroughputMbps",
        "download_unit": "mbps",
        "upload": None,
        "latency": "a.MinRTT",
        "device": None,
        "min_devices": 0,
    },
    "fcc_bdc": {
        "kind": "capability",
        "code": "",
        "lon": "longitude",
        "lat": "latitude",
        "crs": "EPSG:4326",
        "download": "max_advertised_download_speed",
        "upload": "max_advertised_upload_speed",
        "download_unit": "mbps",
        "technology": "technology",
        "provider": "provider_id",
        "technologies": BDC_COUNTED,
    },
}
#: The column that names a location in the findings about a capability row placed by its
#: point, when the file has it (the BDC's and the Fabric's location id).
LOCATION_ID = "location_id"
#: Keys of a ``[[speed]]`` block that name a column.
COLUMN_KEYS = ("lon", "lat", "download", "upload", "latency", "device", "time", "code",
               "technology", "provider")
_DEVICE_NOTE = {
    "mlab_ndt": ("preset mlab_ndt: M-Lab's unified views carry no device or client id (the "
                 "client IP is not exported), so devices are unknown and min_devices is not "
                 "applied; a village needs min_tests tests, whoever ran them"),
}


def with_preset(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of a ``[[speed]]`` block with its preset's keys filled in.

    Parameters
    ----------
    raw
        The block as parsed from TOML.

    Returns
    -------
    dict
        The preset's keys, then the block's own (which win); ``raw`` itself without a preset.

    Raises
    ------
    ConfigError
        For an unknown preset, a ``kind`` other than the preset's, or an ``mlab_ndt`` file
        whose name says it holds the upload view.

    Examples
    --------
    >>> with_preset({"preset": "mlab_ndt", "path": "ndt.csv", "min_tests": 3})["download"]
    'a.MeanThroughputMbps'
    """
    name = raw.get("preset")
    if name is None:
        return dict(raw)
    if name not in PRESETS:
        raise ConfigError(f"[speed] preset {name!r} is not known{did_you_mean(name, PRESETS)}; "
                          f"use one of {list(PRESETS)}")
    preset = PRESETS[name]
    if raw.get("kind", preset["kind"]) != preset["kind"]:
        raise ConfigError(f'[speed] preset = "{name}" is a source of kind = "{preset["kind"]}", '
                          f'not {raw["kind"]!r}: remove kind')
    files = [raw.get("path"), *dict(raw.get("periods") or {}).values()]
    uploads = [str(p) for p in files if p is not None and "upload" in PurePath(str(p)).name.lower()]
    if name == "mlab_ndt" and uploads:
        raise ConfigError(
            f'[speed] preset = "mlab_ndt": {uploads[0]!r} looks like an export of M-Lab\'s '
            "upload view (unified_uploads), whose a.MeanThroughputMbps is the upload speed; "
            "the speed target is a download target: export ndt.unified_downloads"
        )
    return {**preset, **raw}


def check(source: Any) -> None:
    """The rules of a built ``[[speed]]`` block that concern presets and ``technologies``.

    Parameters
    ----------
    source
        A :class:`ruralcov.config.SpeedConfig`.

    Raises
    ------
    ConfigError
        When ``min_devices`` is asked of a preset without devices, or ``technologies`` is
        not a list of text, is given to a source that is not ``capability``, or names a
        class the ``fcc_bdc`` preset does not have.
    """
    if source.kind == "tests" and source.preset and not source.device and source.min_devices:
        raise ConfigError(
            f'[speed] preset = "{source.preset}" has no device column ({note(source, "device")}):'
            f" min_devices = {source.min_devices} could never be applied; set min_devices = 0 "
            'or name a device column with device = "..."'
        )
    wanted = source.technologies
    if wanted is None:
        return
    if source.kind != "capability":
        raise ConfigError(f'[speed] technologies: only for kind = "capability", not '
                          f"{source.kind!r}")
    if not all(isinstance(t, str) for t in wanted):
        raise ConfigError(f"[speed] technologies must be a list of text, got {list(wanted)}")
    known = set(BDC_TECHNOLOGY.values())
    unknown = [t for t in wanted if t not in known]
    if source.preset == "fcc_bdc" and unknown:
        raise ConfigError(
            f"[speed] technologies {unknown} are not technology classes of the fcc_bdc preset"
            f"{did_you_mean(unknown[0], known)}; use some of {sorted(known)}"
        )


def note(source: Any, role: str) -> str | None:
    """What the run says when the preset has no column for ``role`` (``device``).

    Parameters
    ----------
    source
        A :class:`ruralcov.config.SpeedConfig`.
    role
        The column's key.

    Returns
    -------
    str or None
        The message of the run's ``no_device_id`` finding; None without one.
    """
    return _DEVICE_NOTE.get(source.preset or "") if role == "device" else None


def resolve_columns(source: Any, columns: Iterable[str], *, layer: str) -> dict[str, str]:
    """The column keys whose preset name the file spells another way (dots or underscores).

    A preset names nested fields with dots (``client.Geo.Latitude``); an export may write
    ``client_Geo_Latitude`` instead. Each such key is set to the spelling the file has, so
    every engine reads the same columns.

    Parameters
    ----------
    source
        A :class:`ruralcov.config.SpeedConfig` with a preset.
    columns
        The file's columns.
    layer
        The input, for the message.

    Returns
    -------
    dict
        Key -> column, for :func:`dataclasses.replace`; empty without a preset or a change.

    Raises
    ------
    SchemaError
        When a file has both spellings of one field.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> s = SimpleNamespace(preset="mlab_ndt", lon="client.Geo.Longitude", lat="lat")
    >>> resolve_columns(s, ["client_Geo_Longitude", "lat"], layer="speed")
    {'lon': 'client_Geo_Longitude'}
    """
    preset = PRESETS.get(source.preset or "", {})
    cols = set(columns)
    out = {}
    for key in COLUMN_KEYS:
        dotted = preset.get(key)
        if not isinstance(dotted, str) or "." not in dotted:
            continue
        spellings = (dotted, dotted.replace(".", "_"))
        if getattr(source, key, None) not in spellings:
            continue  # the block names its own column
        present = [s for s in spellings if s in cols]
        if len(present) == 2:
            raise SchemaError(f"{layer}: {source.path} has both {spellings[0]!r} and "
                              f'{spellings[1]!r}; set {key} = "..." to the one to read')
        if present and present[0] != getattr(source, key):
            out[key] = present[0]
    return out


def technology_classes(values: Any) -> Any:
    """FCC BDC technology codes as ruralcov's classes (:data:`BDC_TECHNOLOGY`).

    Parameters
    ----------
    values
        A pandas Series of codes, as numbers or text (``"50"``, ``"50.0"``).

    Returns
    -------
    pandas.Series
        The class of each code; missing where the code is missing, not a number or unknown.

    Examples
    --------
    >>> import pandas as pd
    >>> technology_classes(pd.Series(["50", "61", "99", None])).tolist()
    ['fibre', 'satellite_ngso', nan, nan]
    """
    import pandas as pd

    return pd.to_numeric(values, errors="coerce").map(BDC_TECHNOLOGY)
