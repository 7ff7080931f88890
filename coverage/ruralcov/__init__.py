"""ruralcov: fibre and broadband-speed coverage of administrative villages against policy targets.

The one entry point is :func:`analyse`, which turns a :class:`Config` into a
:class:`CoverageResult`; :func:`write_run` writes that result as a run folder.

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
    from ruralcov.report import write_run

__version__ = "0.1.0"

_LAZY = {"Config": "ruralcov.config", "load_config": "ruralcov.config",
         "CoverageResult": "ruralcov.pipeline", "analyse": "ruralcov.pipeline",
         "write_run": "ruralcov.report"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ruralcov' has no attribute {name!r}")


__all__ = [
    "CRSError",
    "Config",
    "ConfigError",
    "CoverageResult",
    "InputError",
    "RuralcovError",
    "SchemaError",
    "__version__",
    "analyse",
    "load_config",
    "write_run",
]
