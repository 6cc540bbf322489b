"""Load services.yaml: read, parse with positions, interpolate, validate, check the graph.

Every problem found becomes one located line; all of them are raised together as a
``CatalogueError`` so the user fixes the file in one go.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from svcorch import accounts, graph, limits, replicas, yamlsrc
from svcorch.errors import CatalogueError, DependencyCycle, Problem
from svcorch.interpolate import InterpolationError, interpolate, parse_dotenv
from svcorch.model import (
    SERVICE_NAME,
    SUPPORTED_VERSIONS,
    Catalogue,
    Condition,
    Service,
    _stringify_env,
)
from svcorch.probes import registry
from svcorch.probes.base import ProbeOptions
from svcorch.yamlsrc import Path_

DEFAULT_FILE = "services.yaml"
MAX_PROBLEMS = 100  # listed at once; past that, fixing the first ones is what helps
TRUNCATED = (
    f"only the first {MAX_PROBLEMS} problems are listed; fix them and run again for the rest"
)
# characters interpolation may produce in the whole file: each value is bounded on its own,
# but `${A}` over and over, or in a value an alias repeats, multiplies a long variable
MAX_INTERPOLATED = yamlsrc.MAX_TEXT


def load(
    path: Path | str,
    *,
    environ: Mapping[str, str] | None = None,
    check_accounts: bool = True,
) -> Catalogue:
    """Read and validate a catalogue. Raises CatalogueError listing every problem.

    ``check_accounts``: each ``user:`` and ``group:`` must exist on this host (not for a
    catalogue exported to run elsewhere).
    """
    path = Path(path)
    loader = _Loader(path, os.environ if environ is None else environ)
    loader.accounts = check_accounts
    return loader.run()


class _Loader:
    def __init__(self, path: Path, environ: Mapping[str, str]) -> None:
        self.path = path
        self.source = str(path)
        self.environ = environ
        self.problems: list[Problem] = []
        self.doc = yamlsrc.Document(data=None)
        self.dotenv: dict[str, str] = {}
        self.top_env: dict[str, str] = {}
        self.interpolated = 0  # characters produced, against MAX_INTERPOLATED
        self.truncated = False  # problems were found past MAX_PROBLEMS, or not looked for
        self.accounts = True  # check that user: and group: exist here
        self.replica: str | None = None  # ${replica} while a service's fields are interpolated
        self.replica_specs: dict[str, list[Any]] = {}  # replicas 1..N-1, interpolated

    # -- reporting ---------------------------------------------------------------------------

    def problem(self, message: str, path: Path_ = (), *, key: bool = False) -> None:
        if self.full():
            return
        mark = self.doc.locate(path, key=key) if path or self.doc.values else None
        if mark is None:
            self.problems.append(Problem(self.source, message))
        else:
            self.problems.append(Problem(self.source, message, mark.line, mark.column))

    def full(self) -> bool:
        """True once MAX_PROBLEMS are found: the rest is not worth the time (a hint for each
        of 100,000 unknown keys took minutes) nor the memory (pydantic's errors for them,
        1.5 KB each)."""
        if len(self.problems) < MAX_PROBLEMS:
            return False
        self.truncated = True
        return True

    def fail_if_problems(self) -> None:
        if self.problems:
            ordered = sorted(
                dict.fromkeys(self.problems),
                key=lambda p: (p.file != self.source, p.line is None, p.line or 0, p.column or 0),
            )
            if self.truncated or len(ordered) > MAX_PROBLEMS:
                ordered = ordered[:MAX_PROBLEMS]
                ordered.append(Problem(self.source, TRUNCATED))
            raise CatalogueError(ordered)

    # -- stages ------------------------------------------------------------------------------

    def run(self) -> Catalogue:
        text = self.read()
        self.doc = yamlsrc.load(text, self.source)
        self.problems.extend(self.doc.problems)
        data = self.doc.data
        if data is None and not self.problems:
            self.problem("the file is empty (start with `version: 1` and `services:`)")
        elif data is not None and not isinstance(data, dict):
            got = type(data).__name__
            self.problem(f"expected a mapping with `version` and `services` at the top, got {got}")
        if not isinstance(data, dict):
            self.fail_if_problems()
        assert isinstance(data, dict)
        # `x-` keys are ignored (they hold YAML anchors): dropped before interpolation, so a
        # variable used only inside an anchor's definition is not reported there
        data = {k: v for k, v in data.items() if not str(k).startswith("x-")}
        known = len(self.problems)
        self.check_version(data)
        if len(self.problems) > known:
            self.fail_if_problems()  # without a known version the rest cannot be read
        self.load_env(data)
        data = self.interpolate_all(data)
        if self.interpolated > MAX_INTERPOLATED:
            self.fail_if_problems()  # reported where it went past; the rest is not worth it
        self.check_os_values(data, ())
        data = self.validate_probes(data)
        catalogue = self.validate_model(data)
        if catalogue is not None:
            catalogue = self.validate_replicas(catalogue)
        self.check_dependencies(data)
        self.check_conditions(data)
        if catalogue is not None and self.accounts:
            self.check_accounts(catalogue)
        if catalogue is not None and not self.problems:
            # the sizes of values already refused would only repeat them
            self.check_exec_sizes(catalogue)
        self.fail_if_problems()
        assert catalogue is not None
        return catalogue

    def read(self) -> str:
        try:
            raw = limits.read_regular_file(self.path, limits.MAX_CATALOGUE_BYTES)
            return raw.decode("utf-8")
        except FileNotFoundError:
            hint = " (give one with -f PATH or SVCORCH_FILE)"
            raise CatalogueError([Problem(self.source, f"no such file{hint}")]) from None
        except limits.Unreadable as exc:
            raise CatalogueError([Problem(self.source, str(exc))]) from None
        except UnicodeDecodeError as exc:
            raise CatalogueError(
                [Problem(self.source, f"not UTF-8 text (byte {exc.start})")]
            ) from None
        except OSError as exc:
            raise CatalogueError([Problem(self.source, exc.strerror or str(exc))]) from None

    def check_version(self, data: dict[str, Any]) -> None:
        if "version" not in data:
            self.problem("missing `version` (add `version: 1` at the top)", ())
            return
        version = data["version"]
        if isinstance(version, bool) or version not in SUPPORTED_VERSIONS:
            supported = ", ".join(str(v) for v in SUPPORTED_VERSIONS)
            self.problem(
                f"unsupported version {version!r} (this svcorch reads version {supported})",
                ("version",),
            )

    def load_env(self, data: dict[str, Any]) -> None:
        """env_file (default `.env` beside the catalogue) and the top-level ``env``."""
        declared = data.get("env_file")
        files: list[tuple[str, Path_]]
        if declared is None:
            default = self.path.parent / ".env"
            files = [(".env", ())] if default.is_file() else []
        elif isinstance(declared, str):
            files = [(declared, ("env_file",))]
        elif isinstance(declared, list) and all(isinstance(f, str) for f in declared):
            files = [(f, ("env_file", i)) for i, f in enumerate(declared)]
        else:
            self.problem("env_file must be a path or a list of paths", ("env_file",))
            files = []
        for name, where in files:
            self.read_dotenv(name, where)
        raw_env = _stringify_env(data.get("env") or {})
        if not isinstance(raw_env, dict):
            return  # the model reports the type
        for key, value in raw_env.items():
            if isinstance(value, str):
                value = self.expand(value, self.lookup_for_env, ("env", key), context=False)
                if value is None:
                    continue
            self.top_env[str(key)] = "" if value is None else str(value)

    def read_dotenv(self, name: str, where: Path_) -> None:
        try:
            name = interpolate(name, self.environ.get)
        except InterpolationError as exc:
            self.problem(f"env_file: {exc}", where)
            return
        file = Path(name)
        if not file.is_absolute():
            file = self.path.parent / file
        try:
            text = limits.read_regular_file(file, limits.MAX_ENV_FILE_BYTES).decode("utf-8")
        except OSError as exc:
            self.problem(f"env_file {name!r}: {exc.strerror or exc}", where)
            return
        except limits.Unreadable as exc:
            self.problem(f"env_file {name!r}: {exc}", where)
            return
        except UnicodeDecodeError as exc:
            self.problem(f"env_file {name!r}: not UTF-8 text (byte {exc.start})", where)
            return
        values, bad_lines = parse_dotenv(text)
        for number, message in bad_lines:
            self.problems.append(Problem(str(file), message, number))
        self.dotenv.update(values)

    def lookup_for_env(self, name: str) -> str | None:
        value = self.environ.get(name)
        return value if value is not None else self.dotenv.get(name)

    def lookup(self, name: str) -> str | None:
        """``${replica}`` inside a service; then the process environment, then env_file,
        then the top-level env: highest first."""
        if name == "replica" and self.replica is not None:
            return self.replica
        value = self.lookup_for_env(name)
        return value if value is not None else self.top_env.get(name)

    def interpolate_all(self, data: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in data.items():
            if key == "env" and isinstance(value, dict):
                result[key] = {k: self.top_env.get(str(k), v) for k, v in value.items()}
            elif key == "env_file":
                result[key] = value
            elif key == "services" and isinstance(value, dict):
                result[key] = {n: self.interpolate_service(n, v) for n, v in value.items()}
            else:
                result[key] = self._interpolate(value, (key,))
        return result

    def replica_form(self, match: re.Match[str]) -> str:
        """``${replica+S:0W}``: this replica's index plus S, zero-padded to W digits (the
        forms of supervisord's ``%(process_num)0Wd`` with ``numprocs_start = S``)."""
        if match.group(0) == "$$":
            return "$$"  # an escaped dollar stays escaped for interpolate
        assert self.replica is not None
        number = int(self.replica) + int(match.group("offset") or 0)
        return str(number).zfill(int(match.group("width") or 0))

    def interpolate_service(self, name: Any, spec: Any) -> Any:
        """A service's fields with ``${replica}`` = 0; with ``replicas: N``, replicas 1..N-1
        interpolated the same way with their own index (validated after the catalogue)."""
        path: Path_ = ("services", name)
        try:
            self.replica = "0"
            declared = self._interpolate(spec, path)
            count = declared.get("replicas") if isinstance(declared, dict) else None
            if isinstance(count, str) and count.strip().isdigit():
                count = int(count)
            if isinstance(count, int) and not isinstance(count, bool) and count > 1:
                extra = []
                for index in range(1, count):
                    self.replica = str(index)
                    extra.append(self._interpolate(spec, path))
                self.replica_specs[str(name)] = extra
        finally:
            self.replica = None
        return declared

    def _interpolate(self, value: Any, path: Path_) -> Any:
        if isinstance(value, str):
            if self.replica is not None and "${replica" in value:
                value = _REPLICA.sub(self.replica_form, value)
            expanded = self.expand(value, self.lookup, path)
            return value if expanded is None else expanded
        if isinstance(value, dict):
            return {k: self._interpolate(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self._interpolate(v, (*path, i)) for i, v in enumerate(value)]
        return value

    def expand(
        self,
        written: str,
        lookup: Callable[[str], str | None],
        path: Path_,
        *,
        context: bool = True,
    ) -> str | None:
        """``written`` interpolated, or None after reporting why it cannot be.

        Each result is bounded (interpolate's MAX_LENGTH), and so is their sum,
        MAX_INTERPOLATED: ``${LONG}`` in a value that an alias repeats would otherwise build
        gigabytes. A value that failed is charged what it built until it failed; once the
        budget is spent, values are left as written (the file is refused anyway).
        """
        if "$" not in written or self.interpolated > MAX_INTERPOLATED:
            return written
        prefix = _context(path) if context else ""
        try:
            result = interpolate(written, lookup)
        except InterpolationError as exc:
            self.interpolated += exc.built
            self.problem(f"{prefix}{exc}", path)
            return None
        self.interpolated += len(result)
        if self.interpolated > MAX_INTERPOLATED:
            size = limits.describe_size(MAX_INTERPOLATED)
            self.problem(
                f"{prefix}variables expand the file past {size} of text, the most svcorch reads",
                path,
            )
            return None
        return result

    def check_os_values(self, value: Any, path: Path_) -> None:
        """Refuse, with its position, every string the OS would refuse (a NUL, a lone
        surrogate, more than an argument may hold) and every bad variable name: anywhere,
        since any string may end up in an argv, a path or an environment."""
        if isinstance(value, str):
            refusal = limits.os_refusal(value)
            if refusal is not None:
                self.problem(f"{_context(path)}the value {refusal}", path)
        elif isinstance(value, dict):
            names = _is_env(path)
            for key, item in value.items():
                child = (*path, key)
                if names:
                    refusal = limits.env_name_refusal(key)
                else:
                    refusal = limits.os_refusal(key)
                    refusal = None if refusal is None else f"key {key!r} {refusal}"
                if refusal is not None:
                    self.problem(f"{_context(path)}{refusal}", child, key=True)
                    continue
                self.check_os_values(item, child)
                if names and isinstance(item, str) and limits.os_refusal(item) is None:
                    entry = limits.env_entry_refusal(key, item)
                    if entry is not None:
                        self.problem(f"{_context(child)}{key}=value {entry}", child)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self.check_os_values(item, (*path, index))

    def check_exec_sizes(self, catalogue: Catalogue) -> None:
        """A command and environment larger than the kernel takes (ARG_MAX) in all."""
        most = limits.exec_limit()
        for name, service in catalogue.services.items():
            if service.command is None or service.external:
                continue
            env = {**catalogue.dotenv, **catalogue.env, **service.env}
            size = limits.exec_size(service.argv(), env)
            if size > most:
                self.problem(
                    f"service {name!r}: its command and environment take {size:,} bytes;"
                    f" the OS takes at most {most:,} for both",
                    ("services", name, "command"),
                )

    def validate_probes(self, data: dict[str, Any]) -> dict[str, Any]:
        """Validate each probe against its own type's model, so errors point into it."""
        services = data.get("services")
        if not isinstance(services, dict):
            return data
        checked: dict[str, Any] = {}
        for name, spec in services.items():
            if isinstance(spec, dict):
                spec = dict(spec)
                for field in ("ready", "liveness"):
                    if isinstance(spec.get(field), dict):
                        spec[field] = self.validate_probe(spec[field], ("services", name, field))
            checked[name] = spec
        return {**data, "services": checked}

    def validate_probe(self, options: dict[str, Any], path: Path_) -> Any:
        if path[-1] == "liveness":
            return self.validate_liveness(options, path)
        return self.validate_probe_options(options, path)

    def validate_liveness(self, liveness: dict[str, Any], path: Path_) -> dict[str, Any]:
        """Flat (``{type: http, ..., failure_threshold: 3}``) or nested (``{probe: {...}}``).

        Always a mapping with a ``probe``, so a probe already reported is not reported again
        as "Input should be a valid dictionary or instance of Liveness".
        """
        if "type" not in liveness and isinstance(liveness.get("probe"), dict):
            rest = {k: v for k, v in liveness.items() if k != "probe"}
            nested = self.validate_probe_options(liveness["probe"], (*path, "probe"))
            return {**rest, "probe": nested}
        rest = {k: v for k, v in liveness.items() if k == "failure_threshold"}
        options = {k: v for k, v in liveness.items() if k != "failure_threshold"}
        return {**rest, "probe": self.validate_probe_options(options, path)}

    def validate_probe_options(self, options: dict[str, Any], path: Path_) -> Any:
        type_name = options.get("type")
        if not isinstance(type_name, str):
            known = ", ".join(registry.names())
            self.problem(f"{_context(path)}missing probe `type` (one of: {known})", path)
            return _INVALID_PROBE
        probe_type = registry.get(type_name)
        if probe_type is None:
            hint = _did_you_mean(type_name, registry.names())
            self.problem(
                f"{_context((*path, 'type'))}unknown probe type {type_name!r}{hint}",
                (*path, "type"),
            )
            return _INVALID_PROBE
        options = self.without_unknown_keys(options, probe_type.options, path)
        try:
            validated: ProbeOptions = probe_type.options.model_validate(options)
        except ValidationError as exc:
            self.report(exc, path, probe_type.options)
            return _INVALID_PROBE
        return validated

    def validate_model(self, data: dict[str, Any]) -> Catalogue | None:
        services = data.get("services")
        if isinstance(services, dict):
            for name in services:
                if not isinstance(name, str) or not SERVICE_NAME.match(name):
                    self.problem(
                        f"invalid service name {name!r}: use lowercase letters, digits and"
                        " _ . - (starting with a letter or digit)",
                        ("services", name),
                        key=True,
                    )
        elif "services" not in data:
            self.problem("missing `services` (a mapping of service name to its definition)")
        self.reject_internal_fields(data)
        data = self.without_unknown_keys(data, Catalogue, ())
        complete = True
        if isinstance(services, dict):
            validated = {}
            for name, spec in services.items():
                service = self.validate_service(str(name), spec)
                complete = complete and service is not None
                if service is not None:
                    validated[name] = service
            data = {**data, "services": validated}
        try:
            catalogue = Catalogue.model_validate({**data, "path": self.path})
        except ValidationError as exc:
            self.report(exc, (), Catalogue)
            return None
        if not complete:
            return None
        return catalogue.model_copy(update={"dotenv": dict(self.dotenv)})

    def validate_service(self, name: str, spec: Any) -> Service | None:
        """One service, on its own: its errors are bounded by its own size, and once
        MAX_PROBLEMS are found the rest are not validated at all."""
        if self.full():
            return None
        path: Path_ = ("services", name)
        spec = self.without_unknown_keys(spec, Service, path)
        try:
            return Service.model_validate(
                {**spec, "name": name} if isinstance(spec, dict) else spec
            )
        except ValidationError as exc:
            self.report(exc, path, Service)
            return None

    def without_unknown_keys(self, value: Any, model: type[BaseModel], path: Path_) -> Any:
        """``value`` with one key at most that ``model`` (or a model inside it) does not know,
        every one reported here as pydantic would, up to MAX_PROBLEMS: pydantic makes an error
        object for every one of 100,000 unknown keys before we can stop it.

        One is left in: a mapping with an unknown key fails in pydantic, so the model's own
        checks (``missing `command```) do not add to the key's error; pydantic's line for it
        is the same as ours, and only one is printed.
        """
        if not isinstance(value, dict) or model.model_config.get("extra") != "forbid":
            return value
        fields = model.model_fields
        known: dict[Any, Any] = {}
        left_one = False
        for key, item in value.items():
            field = fields.get(key) if isinstance(key, str) else None
            if field is None:
                if not self.full():  # pydantic says the same of the one left: one line
                    hint = _did_you_mean(str(key), list(fields))
                    self.problem(
                        f"{_context(path)}unknown key {key!r}{hint}", (*path, key), key=True
                    )
                if not left_one:
                    known[key] = item
                    left_one = True
                continue
            inner = _model_in(field.annotation)
            if inner is not None and not _is_mapping(field.annotation):
                item = self.without_unknown_keys(item, inner, (*path, key))
            known[key] = item
        return known

    def validate_replicas(self, catalogue: Catalogue) -> Catalogue:
        """Replicas 1..N-1 of each replicated service, each validated as a service (they
        differ from replica 0 only where ``${replica}`` appears)."""
        found: dict[str, list[Service]] = {}
        for name, specs in self.replica_specs.items():
            service = catalogue.services.get(name)
            if service is None or service.replicas != len(specs) + 1:
                continue
            path: Path_ = ("services", name)
            copies = []
            for spec in specs:
                checked = self.validate_probes({"services": {name: spec}})["services"][name]
                try:
                    copies.append(Service.model_validate({**checked, "name": name}))
                except ValidationError as exc:
                    self.report(exc, path, Service)
            found[name] = copies
        return catalogue.model_copy(update={"replica_services": found}) if found else catalogue

    def reject_internal_fields(self, data: dict[str, Any]) -> None:
        """The model's own fields (the file's path, the dotenv values, a service's name) are
        not keys users may write: pydantic would accept them and the loader overwrite them."""
        for key in ("path", "dotenv", "replica_services", "groups"):
            if key in data:
                self.problem(f"unknown key {key!r}", (key,), key=True)
        services = data.get("services")
        for name, spec in services.items() if isinstance(services, dict) else ():
            if isinstance(spec, dict) and "name" in spec:
                hint = " (the service's name is its key under `services`)"
                self.problem(
                    f"service {name!r}: unknown key 'name'{hint}",
                    ("services", name, "name"),
                    key=True,
                )

    def report(self, exc: ValidationError, prefix: Path_, model: type[BaseModel]) -> None:
        expected: dict[Path_, tuple[list[str], Any]] = {}  # a value's wrong type(s), per place
        for error in exc.errors(include_url=False):
            loc = _without_union_tags((*prefix, *error["loc"]), start=len(prefix))
            kind = error["type"]
            if loc[:1] == ("env_file",):
                continue  # load_env checked its shape, with a clearer message
            if self.full():
                continue  # counted; the message (and its did-you-mean) is not worth making
            if kind == "extra_forbidden":
                key = str(loc[-1])
                hint = _did_you_mean(key, _fields_at(model, tuple(error["loc"][:-1])))
                self.problem(f"{_context(loc[:-1])}unknown key {key!r}{hint}", loc, key=True)
            elif kind == "missing":
                if loc == ("services",):
                    continue  # validate_model already said so, with a hint
                self.problem(f"{_context(loc[:-1])}missing required key {str(loc[-1])!r}", loc[:-1])
            elif kind in _EXPECTED:
                # `str | list[str]` fails once per member: gather them into one line
                wanted, _ = expected.setdefault(loc, ([], error.get("input")))
                wanted.append(_EXPECTED[kind])
            else:
                message = error["msg"].removeprefix("Value error, ")
                self.problem(f"{_context(loc)}{message}", loc)
        for loc, (wanted, value) in expected.items():
            got = "nothing" if value is None else _shorten(repr(value))
            kinds = " or ".join(dict.fromkeys(wanted))
            self.problem(f"{_context(loc)}expected {kinds}, got {got}", loc)

    def check_dependencies(self, data: dict[str, Any]) -> None:
        """Unknown and self dependencies and cycles, from the raw data so they show up with
        every other problem (a cycle is reported even when a key elsewhere is misspelt)."""
        services = data.get("services")
        if not isinstance(services, dict):
            return
        names = [str(n) for n in services]
        edges: dict[str, list[str]] = {str(n): [] for n in services}
        for name, spec in services.items():
            needs = spec.get("depends_on") if isinstance(spec, dict) else None
            if not isinstance(needs, list | dict):
                continue
            for position, dependency in enumerate(needs):
                if isinstance(dependency, bool) or not isinstance(dependency, str | int):
                    continue  # the model reports the type
                dependency = str(dependency)
                if dependency != name and dependency in services:
                    edges[str(name)].append(dependency)
                    continue
                if self.full():
                    continue  # a did-you-mean over thousands of names is not cheap
                where = self.dependency_path(name, dependency, position)
                if dependency == name:
                    self.problem(f"service {name!r}: depends on itself", where)
                elif dependency not in services:
                    hint = _did_you_mean(dependency, names)
                    self.problem(
                        f"service {name!r}: depends_on names unknown service {dependency!r}{hint}",
                        where,
                    )
        try:
            graph.ServiceGraph.from_dependencies(edges)
        except DependencyCycle as exc:  # one line per cycle: each is its own problem
            self.problems.extend(
                Problem(self.source, str(DependencyCycle([cycle]))) for cycle in exc.cycles
            )

    def check_accounts(self, catalogue: Catalogue) -> None:
        """``user:`` and ``group:`` name accounts this host has (svcorch switches to them)."""
        for name, service in catalogue.services.items():
            if service.external:
                continue
            for key, value, find in (
                ("user", service.user, accounts.find_user),
                ("group", service.group, accounts.find_group),
            ):
                if value is None:
                    continue
                try:
                    find(value)
                except accounts.AccountError as exc:
                    self.problem(f"service {name!r}: {key}: {exc}", ("services", name, key))

    def check_conditions(self, data: dict[str, Any]) -> None:
        """``completed`` on a service that is not a oneshot, from the raw data, so it is
        reported with every other problem (not only once the rest of the file is valid)."""
        services = data.get("services")
        if not isinstance(services, dict):
            return
        for name, spec in services.items():
            needs = spec.get("depends_on") if isinstance(spec, dict) else None
            if not isinstance(needs, dict):
                continue  # a list holds names only: every edge is `ready`
            for position, (dependency, edge) in enumerate(needs.items()):
                condition = edge.get("condition") if isinstance(edge, dict) else edge
                target = services.get(dependency)
                if condition != Condition.COMPLETED.value or not isinstance(target, dict):
                    continue
                if _truthy(target.get("oneshot", False)):
                    continue
                self.problem(
                    f"service {name!r}: condition 'completed' needs a oneshot, and"
                    f" {dependency!r} is not one (use 'ready' or 'started')",
                    self.dependency_path(str(name), str(dependency), position),
                )

    def dependency_path(self, service: str, dependency: str, position: int) -> Path_:
        base: Path_ = ("services", service, "depends_on")
        if self.doc.has_key((*base, dependency)):
            return (*base, dependency)
        return (*base, position)


_REPLICA = re.compile(r"\$\$|\$\{replica(?:\+(?P<offset>\d+))?(?::0(?P<width>\d+))?\}")


class _InvalidProbe(ProbeOptions):
    """Stands in for probe options already reported, so the rest of the file is still checked
    without follow-on errors (the catalogue is rejected anyway)."""

    type: str = "invalid"


_INVALID_PROBE = _InvalidProbe()


# pydantic's type errors, said in the words of a YAML file
_EXPECTED = {
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
}
# the member names pydantic adds to the location of a union's errors: `command.list[str]`
_UNION_TAG = re.compile(r"^(str|int|float|bool|none|[a-z-]+\[.*\])$")


def _without_union_tags(loc: tuple[str | int, ...], start: int = 0) -> tuple[str | int, ...]:
    """``loc`` without union member names (from ``start`` on), keeping names users gave
    (services, env keys)."""
    return tuple(
        part
        for index, part in enumerate(loc)
        if index < start
        or not (isinstance(part, str) and _UNION_TAG.match(part) and not _users_key(loc, index))
    )


def _users_key(loc: tuple[str | int, ...], index: int) -> bool:
    """A mapping key the user chose: a service name, an env variable, a dependency."""
    if index == 1:
        return loc[0] in ("services", "env")
    return index == 3 and loc[0] == "services" and loc[2] in ("env", "depends_on")


def _is_env(path: Path_) -> bool:
    """Whether the mapping at ``path`` is an ``env``: its keys are variable names."""
    return path == ("env",) or (len(path) == 3 and path[0] == "services" and path[2] == "env")


def _truthy(value: Any) -> bool:
    """A YAML boolean as pydantic reads it (``true``, ``"yes"``, ``1``)."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "on", "1", "y", "t")
    return bool(value) and not isinstance(value, dict | list)


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _context(path: Iterable[str | int]) -> str:
    """``service 'web': restart.policy: `` for a path inside a service; dotted otherwise."""
    parts = list(path)
    if len(parts) >= 2 and parts[0] == "services":
        rest = ".".join(str(p) for p in parts[2:])
        return f"service {parts[1]!r}: " + (f"{rest}: " if rest else "")
    return ".".join(str(p) for p in parts) + ": " if parts else ""


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names valid at ``loc`` inside ``model``, for did-you-mean hints."""
    current: type[BaseModel] | None = model
    pending = list(loc)
    while pending and current is not None:
        field = current.model_fields.get(str(pending.pop(0)))
        if field is None:
            return []
        annotation = field.annotation
        if _is_mapping(annotation) and pending:
            pending.pop(0)  # the key, e.g. the service name
        current = _model_in(annotation)
    return list(current.model_fields) if current is not None else []


def _is_mapping(annotation: Any) -> bool:
    return typing.get_origin(annotation) is dict


def _model_in(annotation: Any) -> type[BaseModel] | None:
    for candidate in _walk_types(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _walk_types(annotation: Any) -> Iterator[Any]:
    yield annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        for argument in typing.get_args(annotation):
            yield from _walk_types(argument)


def service_environment(
    catalogue: Catalogue, service: Service, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """What a service's process sees: environment < env_file < top-level env < its own env.

    ``environ`` is the environment of the command that asked for the start (the daemon gets
    it with each request), defaulting to this process's own.
    """
    base = os.environ if environ is None else environ
    return {**base, **catalogue.dotenv, **catalogue.env, **service.env}


def process_environment(
    catalogue: Catalogue, service: Service, environ: Mapping[str, str], state_dir: Path
) -> dict[str, str]:
    """The environment a service's process starts with: ``service_environment`` plus what
    svcorch adds. The engine spawns with it; preflight looks programs up on its PATH."""
    env = service_environment(catalogue, service, environ)
    base, index = replicas.split(service.name)  # a replica: worker#1 is worker's replica 1
    env["SVCORCH_SERVICE"] = base
    if index is not None:
        env["SVCORCH_REPLICA"] = str(index)
    env["SVCORCH_STATE_DIR"] = str(state_dir)
    # tools installed beside svcorch (gunicorn, celery in its venv) are found first
    bindir = str(Path(sys.executable).parent)
    path = env.get("PATH", os.defpath)
    if bindir not in path.split(os.pathsep):
        env["PATH"] = bindir + os.pathsep + path
    return env
