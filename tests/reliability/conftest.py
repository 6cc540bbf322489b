"""Hostile-condition tests drive the real `svcorch` command like tests/runtime does."""

from __future__ import annotations

from tests.runtime.conftest import stack

__all__ = ["stack"]
