"""`svcorch export TARGET`: the selected services as another tool's configuration files.

The exporter (one module per target, loaded only when chosen) returns files and warnings;
this module selects the services, applies ``--strict`` and writes the files: secret files
0600, the rest 0644. Without an output folder it returns a preview with secrets masked.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from svcorch import plan
from svcorch.errors import ExportGap, UsageError
from svcorch.exporters import TARGETS, get
from svcorch.exporters.base import Export, ExportRequest, secret_values
from svcorch.graph import ServiceGraph
from svcorch.model import Catalogue, Kind
from svcorch.redaction import redact


@dataclass(frozen=True)
class ExportOutcome:
    target: str
    files: tuple[str, ...]  # paths written, or names previewed
    warnings: tuple[str, ...]
    preview: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {"target": self.target, "files": list(self.files), "warnings": list(self.warnings)}


def check_target(target: str) -> None:
    if target not in TARGETS:
        close = difflib.get_close_matches(target, list(TARGETS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(
            f"unknown export target {target!r}{hint}; choose one of: " + ", ".join(TARGETS)
        )


def parse_images(values: Sequence[str], graph: ServiceGraph) -> dict[str, str]:
    """``--image NAME=IMAGE`` options; an unknown service is an error, like on `up`."""
    images: dict[str, str] = {}
    for value in values:
        name, sep, image = value.partition("=")
        if not sep or not name or not image:
            raise UsageError(f"--image {value!r}: expected NAME=IMAGE, e.g. web=registry/web:1.4")
        images[name] = image
    graph.check_known(images)
    return images


def select(
    catalogue: Catalogue, graph: ServiceGraph, names: Sequence[str], profiles: Sequence[str]
) -> ServiceGraph:
    """Named services (or the profiles') with what they need; neither: every service, since
    compose keeps each one's profiles itself."""
    if not names and not profiles:
        return graph
    return graph.subgraph(plan.select_up(catalogue, graph, names, profiles))


def build(target: str, request: ExportRequest, *, strict: bool) -> Export:
    check_target(target)
    result = get(target)(heard_from_outside(target, request))
    if strict and result.warnings:
        raise ExportGap("\n".join(f"export {target}: {w}" for w in result.warnings))
    return result


def heard_from_outside(target: str, request: ExportRequest) -> ExportRequest:
    """The request as the target can gate it. A ``notify`` readiness is heard only by the
    manager that started the process: systemd hears it itself (``Type=notify``); every other
    target's gates probe from outside, so there the liveness probe stands in for it (as it
    does for an external service everywhere)."""
    from dataclasses import replace

    services = dict(request.catalogue.services)
    changed = False
    for name, service in services.items():
        if service.ready is None or service.ready.type != "notify":
            continue
        if target == "systemd" and service.kind is not Kind.EXTERNAL:
            continue
        services[name] = service.model_copy(update={"ready": service.outside_probe()})
        changed = True
    if not changed:
        return request
    catalogue = request.catalogue.model_copy(update={"services": services})
    return replace(request, catalogue=catalogue)


def write(result: Export, out: Path) -> list[Path]:
    """Every file into ``out`` (created); secret files 0600 even when they existed before."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, file in result.files.items():
        path = out / name
        mode = 0o600 if file.secret else 0o644
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        os.fchmod(descriptor, mode)  # O_CREAT's mode does not apply to an existing file
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(file.text)
        written.append(path)
    for directory in result.directories:
        Path(directory).mkdir(parents=True, exist_ok=True, mode=0o700)
    return written


def preview(result: Export, secrets: Sequence[str]) -> str:
    """All files one after another, each under a ``# ==> NAME <==`` line, secrets as ***."""
    parts = []
    for name, file in result.files.items():
        parts.append(f"# ==> {name} <==\n" + redact(file.text, secrets))
    return "\n".join(parts)


def run(
    target: str,
    request: ExportRequest,
    *,
    strict: bool,
    out: Path | None,
) -> ExportOutcome:
    result = build(target, request, strict=strict)
    if out is None:
        shown = preview(result, secret_values(request))
        return ExportOutcome(target, tuple(result.files), result.warnings, shown)
    written = write(result, out)
    return ExportOutcome(target, tuple(str(p) for p in written), result.warnings)


def request_for(
    catalogue: Catalogue,
    graph: ServiceGraph,
    *,
    out: Path | None,
    state_dir: Path,
    images: Mapping[str, str],
    svcorch_image: str | None,
    svcorch: str,
) -> ExportRequest:
    return ExportRequest(
        catalogue=catalogue,
        graph=graph,
        out_dir=(out or Path.cwd()).absolute(),
        state_dir=state_dir.absolute(),
        svcorch=svcorch,
        images=dict(images),
        svcorch_image=svcorch_image,
    )
