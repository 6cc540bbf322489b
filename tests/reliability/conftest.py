"""Hostile conditions, through the installed command; the Stack fixture of tests/runtime."""

from __future__ import annotations

from tests.runtime.conftest import stack

__all__ = ["stack"]
