"""Embedded demo inputs, shipped as ``ruralcov.demo_data`` (see README.md in this folder)."""
