"""ruralcov: fibre and broadband-speed coverage of administrative villages against policy targets.

The one entry point is :func:`analyse`, which turns a :class:`Config` into a
:class:`CoverageResult`; :func:`write_run` writes that result as a run folder, and
:func:`read_run` reads it back from the folder alone (copied or moved, without its inputs).
:func:`plan_run` plans the fibre extension of a run folder (:class:`PlanOptions`). The uses of
a run folder have public modules of their own: :mod:`ruralcov.audit` (claimed lists),
:mod:`ruralcov.diff` (two runs) and :mod:`ruralcov.verify` (recompute and compare).

These names are imported on first use, so that a program using only part of the package (the
spatial engine, the stream) does not pay for loading the whole pipeline.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ruralcov.errors import ConfigError, CRSError, InputError, RuralcovError, SchemaError

if TYPE_CHECKING:
    from ruralcov.config import Config, load_config
    from ruralcov.pipeline import CoverageResult, analyse
    from ruralcov.plan import plan_run
    from ruralcov.planner import PlanOptions
    from ruralcov.report import write_run
    from ruralcov.runfolder import read_run

#: pyproject.toml's version, looked up on first use (:func:`_version`).
__version__: str

_LAZY = {"Config": "ruralcov.config", "load_config": "ruralcov.config",
         "CoverageResult": "ruralcov.pipeline", "analyse": "ruralcov.pipeline",
         "write_run": "ruralcov.report", "read_run": "ruralcov.runfolder",
         "plan_run": "ruralcov.plan", "PlanOptions": "ruralcov.planner"}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        return _version()
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ruralcov' has no attribute {name!r}")


def _version() -> str:
    """The version of pyproject.toml (its one statement), from the installed package's metadata.

    Looked up on first use: reading the metadata costs more than importing this package.
    A copy of the source used without installing it has no metadata; it says so (``0+unknown``,
    what manifests then record) rather than name a version it may not be.
    """
    global __version__
    from importlib import metadata

    try:
        __version__ = metadata.version("ruralcov")
    except metadata.PackageNotFoundError:  # pragma: no cover - a source tree never installed
        __version__ = "0+unknown"
    return __version__


__all__ = [
    "CRSError",
    "Config",
    "ConfigError",
    "CoverageResult",
    "InputError",
    "PlanOptions",
    "RuralcovError",
    "SchemaError",
    "__version__",
    "analyse",
    "load_config",
    "plan_run",
    "read_run",
    "write_run",
]
