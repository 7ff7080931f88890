"""The error family: every failure a user can fix is one of these, with a message naming the fix."""

from __future__ import annotations


class RuralcovError(Exception):
    """Base class; the CLI prints the message as one line and exits with status 2."""


class ConfigError(RuralcovError, ValueError):
    """The configuration file is unreadable, has an unknown key or a value out of range."""


class InputError(RuralcovError, OSError):
    """An input file is missing, unreadable or in a format that cannot be read."""


class SchemaError(RuralcovError, ValueError):
    """An input lacks a required column or has values of the wrong type."""


class CRSError(RuralcovError, ValueError):
    """An input has no CRS and none was given, or its coordinates cannot be in its CRS."""
