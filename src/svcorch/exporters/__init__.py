"""Exporters: pure functions from the catalogue to another tool's configuration files.

One module per target, imported only when chosen (so exporting to systemd never loads the
Kubernetes code); each defines ``export(request) -> Export``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from svcorch.exporters.base import Exporter

TARGETS: dict[str, str] = {
    "kubernetes": "svcorch.exporters.kubernetes",
    "compose": "svcorch.exporters.compose",
    "systemd": "svcorch.exporters.systemd",
    "supervisord": "svcorch.exporters.supervisord",
}


def get(target: str) -> Exporter:
    """The exporter of ``target`` (one of ``TARGETS``)."""
    module = importlib.import_module(TARGETS[target])
    exporter: Exporter = module.export
    return exporter
