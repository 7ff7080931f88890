"""The configuration described from its own dataclasses: the reference and ``ruralcov init``.

Every key of :mod:`ruralcov.config` carries its default and one line of help
(:func:`ruralcov.config.key`). :func:`reference` lists them for the documentation site, and
:func:`template` writes them as a commented ``config.toml`` that ``ruralcov validate`` accepts
once the paths are filled in. Both read the dataclasses, so neither can drift from the code.
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ruralcov.config import (
    BoundariesConfig,
    CorrectionsConfig,
    FibreConfig,
    MapsConfig,
    OutputConfig,
    RunConfig,
    SpeedConfig,
    TargetsConfig,
    VillagesConfig,
)

__all__ = ["SECTIONS", "reference", "template"]

#: Section -> (dataclass, TOML array of tables?), in the order a configuration reads.
SECTIONS: dict[str, tuple[type, bool]] = {
    "run": (RunConfig, False),
    "villages": (VillagesConfig, False),
    "boundaries": (BoundariesConfig, False),
    "fibre": (FibreConfig, True),
    "speed": (SpeedConfig, True),
    "targets": (TargetsConfig, False),
    "maps": (MapsConfig, False),
    "corrections": (CorrectionsConfig, False),
    "output": (OutputConfig, False),
}
#: Sections a run needs; the others are optional and come commented out.
REQUIRED = ("run", "villages", "fibre", "speed", "targets", "maps")
#: Keys set by ruralcov itself, never by a user: listed, never templated.
INTERNAL = {("speed", "period_value")}
#: What the template sets where the dataclass has no default: empty required paths (refused
#: until filled in), and the CRS of speed-test coordinates, which a CSV or plain Parquet file
#: does not carry (a file that has a CRS keeps its own, with an info issue saying so).
PLACEHOLDERS = {
    ("run", "name"): "my-run",
    ("villages", "path"): "",
    ("fibre", "path"): "",
    ("speed", "path"): "",
    ("speed", "crs"): "EPSG:4326",
}


def toml_value(value: Any) -> str:
    """A default as TOML text (``None``: ``-``, meaning not set).

    Examples
    --------
    >>> toml_value(0.98), toml_value("tests"), toml_value(("a", "b")), toml_value(None)
    ('0.98', '"tests"', '["a", "b"]', '-')
    >>> toml_value({}), toml_value({"county": "c.csv"})
    ('{}', '{ county = "c.csv" }')
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | Path):
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, Mapping):
        inner = ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def reference() -> dict[str, list[tuple[str, str, str]]]:
    """Every configuration key with its default and help, by section.

    Returns
    -------
    dict
        Section name -> ``(key, default as TOML text, help)`` in the dataclass's order;
        a default of ``-`` means the key is not set unless given.

    Examples
    --------
    >>> reference()["targets"][0][:2]
    ('fibre_share', '0.98')
    """
    return {
        section: [(f.name, toml_value(_default(f)), f.metadata["help"])
                  for f in dataclasses.fields(cls)]
        for section, (cls, _) in SECTIONS.items()
    }


def _key_lines(section: str, f: dataclasses.Field, *, comment_out: bool) -> list[str]:
    help_lines = textwrap.wrap(f.metadata["help"], 96)
    lines = [f"# {line}" for line in help_lines]
    value = PLACEHOLDERS.get((section, f.name), _default(f))
    if value is None:
        lines.append(f"# {f.name} =")
    else:
        text = f"{f.name} = {toml_value(value)}"
        lines.append(f"# {text}" if comment_out else text)
    return lines


def template() -> str:
    """A commented ``config.toml``: every section, every key with its default and help.

    Keys without a default stay commented out; the required paths are empty strings, which
    ``ruralcov validate`` refuses until they are filled in. Optional sections
    (``[boundaries]``, ``[corrections]``, ``[output]``) are commented out as a whole.

    Returns
    -------
    str
        TOML text.
    """
    out = [
        "# ruralcov configuration, written by `ruralcov init`.",
        "# Fill in the paths (relative to this file), check the column names against your",
        "# files, then: ruralcov validate config.toml   and   ruralcov run config.toml",
        "# Every key is shown with its default; a line starting '# key =' is not set.",
        "",
    ]
    for section, (cls, many) in SECTIONS.items():
        optional = section not in REQUIRED
        header = f"[[{section}]]" if many else f"[{section}]"
        out.append(f"# {header}" if optional else header)
        for f in dataclasses.fields(cls):
            if (section, f.name) in INTERNAL:
                continue
            out += _key_lines(section, f, comment_out=optional)
        out.append("")
    return "\n".join(out)
