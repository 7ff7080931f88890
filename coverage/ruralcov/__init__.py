"""ruralcov: fibre and broadband-speed coverage of administrative villages against policy targets.

The one entry point is :func:`analyse`, which turns a :class:`Config` into a
:class:`CoverageResult`; :func:`write_run` writes that result as a run folder.
"""

from __future__ import annotations

from ruralcov.config import Config, load_config
from ruralcov.errors import ConfigError, CRSError, InputError, RuralcovError, SchemaError
from ruralcov.pipeline import CoverageResult, analyse
from ruralcov.report import write_run

__version__ = "0.1.0"

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
