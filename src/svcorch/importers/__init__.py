"""Importers: pure functions from another tool's configuration to a services.yaml skeleton."""

from __future__ import annotations
