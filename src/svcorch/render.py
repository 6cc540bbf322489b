"""Pure functions from result objects to text, rich renderables and JSON.

Used by the CLI only. Knows result types, never typer options.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.text import Text
from rich.tree import Tree

from svcorch.redaction import Redactor

if TYPE_CHECKING:
    from svcorch.graph import ServiceGraph
    from svcorch.model import Catalogue
    from svcorch.plan import Plan

# -- secrets -----------------------------------------------------------------------------------


def redact(value: Any, key: str = "", redactor: Redactor | None = None) -> Any:
    """Mask secret-named keys, credentials by shape and ``redactor``'s known secret values
    anywhere in a JSON-like structure."""
    return (redactor or Redactor()).data(value, key)


# -- catalogue ---------------------------------------------------------------------------------


def resolved_catalogue(catalogue: Catalogue, redactor: Redactor | None = None) -> dict[str, Any]:
    """The interpolated catalogue with defaults filled, secrets masked: by key and shape, and
    every secret value wherever else it went (``--password ${DB_PASSWORD}`` in a command)."""
    data = catalogue.model_dump(mode="json")
    data["name"] = catalogue.label  # the default shown as graph and --dot show it
    redacted: dict[str, Any] = redact(data, redactor=redactor or Redactor.for_catalogue(catalogue))
    return redacted


def yaml_text(data: Any) -> str:
    import yaml

    # libyaml's emitter when present: the pure-Python one takes seconds on a large catalogue
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    text: str = yaml.dump(data, Dumper=dumper, sort_keys=False, allow_unicode=True, width=100)
    return text


def json_text(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of services.yaml (see :mod:`svcorch.schema`)."""
    from svcorch.schema import json_schema as build

    return build()


# -- graph -------------------------------------------------------------------------------------


def graph_document(catalogue: Catalogue, graph: ServiceGraph) -> dict[str, Any]:
    """``graph --json``: nodes in start order with kind and probes, edges with conditions."""
    nodes = []
    edges = []
    for name in graph.start_order():
        service = catalogue.services[name]
        liveness = service.liveness
        nodes.append(
            {
                "name": name,
                "kind": service.kind.value,
                "probe": _probe_summary(service.ready),
                "liveness": _probe_summary(liveness.probe if liveness else None),
            }
        )
        edges += [
            {
                "from": dependency,
                "to": name,
                "condition": edge.condition.value,
                "restart_on_dependency": edge.restart_on_dependency,
            }
            for dependency, edge in service.depends_on.items()
            if dependency in graph
        ]
    return {"name": catalogue.label, "nodes": nodes, "edges": edges}


def _probe_summary(options: Any) -> dict[str, Any] | None:
    """Type, target (never a secret), timeout and period of a probe; None without one."""
    if options is None:
        return None
    from svcorch.durations import format_duration

    return {
        "type": options.type,
        "target": options.target(),
        "timeout": format_duration(options.timeout),
        "period": format_duration(options.period),
    }


def _probe(catalogue: Catalogue, name: str) -> str:
    ready = catalogue.services[name].ready
    return ready.type if ready is not None else "started"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot(
    catalogue: Catalogue, graph: ServiceGraph, timings: Mapping[str, float] | None = None
) -> str:
    from svcorch.model import Kind

    """Graphviz: one node per service (label shows the probe), one edge per dependency."""
    lines = [
        f"digraph {_quote(catalogue.label)} {{",
        "  rankdir=BT;",
        '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=10];',
    ]
    slowest = max(timings.values(), default=0.0) if timings else 0.0
    for name in graph.start_order():
        service = catalogue.services[name]
        label = f"{name}\\n[{_probe(catalogue, name)}]"
        attributes = []
        if service.kind is Kind.EXTERNAL:
            attributes += ["shape=cylinder", 'fillcolor="#e8e8e8"', "style=filled"]
            label += "\\nexternal"
        elif service.kind is Kind.ONESHOT:
            attributes += ['style="rounded,filled,dashed"', 'fillcolor="#fff6e0"']
            label += "\\noneshot"
        if timings is not None and name in timings:
            label += f"\\n{timings[name]:.2f}s"
            attributes.append(f'fillcolor="{_heat(timings[name], slowest)}"')
        attributes.insert(0, f'label="{label}"')
        lines.append(f"  {_quote(name)} [{', '.join(attributes)}];")
    lines.extend(
        f"  {_quote(dependency)} -> {_quote(dependent)}"
        + (f" [label={_quote(condition)}]" if condition != "ready" else "")
        + ";"
        for dependency, dependent, condition in _edges(graph)
    )
    lines.append("}")
    return "\n".join(lines) + "\n"


def _heat(seconds: float, slowest: float) -> str:
    """White for instant, deep orange for the slowest service."""
    share = seconds / slowest if slowest > 0 else 0.0
    green = int(0xF4 - share * (0xF4 - 0x8C))
    blue = int(0xF4 - share * (0xF4 - 0x3C))
    return f"#ff{green:02x}{blue:02x}"


def _edges(graph: ServiceGraph) -> list[tuple[str, str, str]]:
    return sorted(
        (dependency, dependent, graph.condition(dependency, dependent))
        for dependency, dependent in graph.dag.edges
    )


def mermaid(catalogue: Catalogue, graph: ServiceGraph) -> str:
    from svcorch.model import Kind

    """``graph TD`` in the style of the seed's diagrams: base layer at the top."""
    lines = ["graph TD"]
    ids = {name: f"s{i}" for i, name in enumerate(graph.start_order())}
    for name, node in ids.items():
        service = catalogue.services[name]
        label = f"{name}<br/>{_probe(catalogue, name)}"
        if service.kind is Kind.EXTERNAL:
            lines.append(f'    {node}[("{label}")]')
        elif service.kind is Kind.ONESHOT:
            lines.append(f'    {node}[/"{label}"/]')
        else:
            lines.append(f'    {node}["{label}"]')
    for dependency, dependent, condition in _edges(graph):
        arrow = f"-->|{condition}|" if condition != "ready" else "-->"
        lines.append(f"    {ids[dependency]} {arrow} {ids[dependent]}")
    return "\n".join(lines) + "\n"


def tree(catalogue: Catalogue, graph: ServiceGraph) -> Tree:
    from svcorch.model import Kind

    """Each top service with what it needs beneath it.

    A service's dependencies are drawn under its first appearance only; later appearances say
    ``(see above)``. Drawing shared dependencies again under every dependent grows
    exponentially with the depth of a layered stack (2,000 services never finished).
    """
    root = Tree(Text(catalogue.label, style="bold"))
    tops = [n for n in graph.start_order() if not graph.dependents(n)]
    expanded: set[str] = set()

    def add(branch: Tree, name: str, condition: str | None) -> None:
        label = Text(name, style="bold cyan")
        label.append(f"  {_probe(catalogue, name)}", style="dim")
        kind = catalogue.services[name].kind
        if kind is not Kind.MANAGED:
            label.append(f"  {kind.value}", style="magenta")
        if condition and condition != "ready":
            label.append(f"  (waits: {condition})", style="yellow")
        dependencies = graph.dependencies(name)
        if dependencies and name in expanded:
            label.append("  (see above)", style="dim")
            branch.add(label)
            return
        expanded.add(name)
        node = branch.add(label)
        for dependency in dependencies:
            add(node, dependency, graph.condition(dependency, name))

    for name in tops:
        add(root, name, None)
    return root


# -- plans -------------------------------------------------------------------------------------


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def plan_text(plan: Plan) -> Text:
    from svcorch.model import Kind

    text = Text()
    verb = "start" if plan.action == "up" else "stop"
    services = _count(len(plan.order), "service")
    waves = _count(len(plan.generations), "wave")
    text.append(f"{verb} plan: {services} in {waves}\n", style="bold")
    for index, wave in enumerate(plan.generations, start=1):
        text.append(f"wave {index}\n", style="bold")
        for step in wave:
            text.append(f"  {step.service}", style="cyan")
            if plan.action == "up":
                how = {
                    Kind.EXTERNAL: f"wait for {step.probe}",
                    Kind.ONESHOT: "run to completion",
                    Kind.MANAGED: f"start, ready by {step.probe or 'running'}",
                }[step.kind]
                text.append(f"  {how}")
                if step.waits_for:
                    waits = ", ".join(f"{d} {c}" for d, c in step.waits_for)
                    text.append(f"  after: {waits}", style="dim")
            else:
                how = "leave running (external)" if step.kind is Kind.EXTERNAL else "stop"
                text.append(f"  {how}")
                if step.waits_for:
                    text.append("  after: " + ", ".join(d for d, _ in step.waits_for), style="dim")
            text.append("\n")
    return text


# -- runtime -----------------------------------------------------------------------------------

STATE_STYLES = {
    "ready": "green",
    "completed": "green",
    "external-ok": "green",
    "starting": "yellow",
    "waiting": "dim",
    "probing": "yellow",
    "running": "yellow",
    "backoff": "magenta",
    "unready": "magenta",
    "degraded": "magenta",
    "stopping": "yellow",
    "stopped": "dim",
    "failed": "bold red",
    "fatal": "bold red",
    "blocked": "red",
    "external-down": "bold red",
}

SERVICE_COLOURS = (
    "cyan",
    "magenta",
    "green",
    "yellow",
    "blue",
    "bright_cyan",
    "bright_magenta",
    "bright_green",
    "bright_yellow",
    "bright_blue",
)


def state_style(state: str) -> str:
    if state.startswith("exited"):
        return "red"
    return STATE_STYLES.get(state, "")


def event_line(event: Mapping[str, Any], width: int = 16) -> Text:
    """One transition as one line: ``redis            ready      PONG (0.41s)``."""
    line = Text()
    line.append(f"{event['service']:<{width}} ", style="bold")
    new = str(event["new"])
    line.append(f"{new:<10}", style=state_style(new))
    detail = str(event.get("detail") or "")
    if detail:
        line.append(f" {detail}")
    return line


def progress_update(rows: dict[str, dict[str, Any]], event: Mapping[str, Any], now: float) -> None:
    """Fold one event into the live view's rows (service -> state, detail, timing)."""
    row = rows.setdefault(str(event["service"]), {"state": "", "detail": "", "since": None})
    new = str(event["new"])
    if new in ("starting", "running", "probing", "stopping", "backoff"):
        row["since"], row["took"] = now, None
    elif row.get("since") is not None and row.get("took") is None:
        row["took"] = now - row["since"]
    row["state"] = new
    row["detail"] = str(event.get("detail") or "")


class ProgressTable:
    """A rich renderable over the live rows; elapsed times tick while a service is busy."""

    def __init__(self, rows: dict[str, dict[str, Any]]) -> None:
        self.rows = rows

    def __rich__(self) -> Any:
        import time

        from rich.table import Table

        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("SERVICE", "STATE", "TIME", "DETAIL"):
            table.add_column(column, no_wrap=column != "DETAIL", overflow="ellipsis")
        now = time.monotonic()
        for name, row in self.rows.items():
            since, took = row.get("since"), row.get("took")
            elapsed = took if took is not None else (now - since if since is not None else None)
            state = str(row["state"])
            table.add_row(
                name,
                Text(state, style=state_style(state)),
                "" if elapsed is None else f"{elapsed:.1f}s",
                Text(str(row["detail"]), overflow="ellipsis", no_wrap=True),
            )
        return table


def outcome_text(
    outcome: Mapping[str, Any], *, verbose_failures: bool = True, daemon: bool = True
) -> Text:
    """The last words of an up, down or restart. ``daemon``: the services outlive this
    command (a foreground up stops them itself), so a failure says what runs and how to stop."""
    action = str(outcome.get("action"))
    recreated = recreate_text(outcome.get("recreated") or {})
    if outcome.get("ok"):
        return Text.assemble(recreated, _success_text(outcome, action))
    text = recreated
    for failure in outcome.get("failed") or []:
        text.append(f"{failure['service']} failed: ", style="bold red")
        text.append(f"{failure['reason']}\n")
        tail = failure.get("log_tail") or []
        if verbose_failures and tail:
            text.append(f"  last {len(tail)} lines of its log since this start:\n", style="dim")
            for line in tail:
                text.append(f"  | {line}\n", style="dim")
    blocked = list(outcome.get("blocked") or [])
    if blocked:
        text.append(f"not started (a dependency failed): {', '.join(blocked)}\n", style="red")
    pending = list(outcome.get("pending") or [])
    if pending and daemon:
        text.append(f"still starting (the daemon carries on): {', '.join(pending)}\n", "yellow")
    rolled_back = list(outcome.get("rolled_back") or [])
    if rolled_back:
        text.append(f"stopped by --rollback: {', '.join(rolled_back)}\n", style="yellow")
    states: Mapping[str, str] = outcome.get("states") or {}
    if states:
        elapsed = float(outcome.get("elapsed") or 0.0)
        text.append(f"{action} failed after {elapsed:.2f}s; each service now:\n", style="bold")
        width = max(len(name) for name in states)
        for name, state in states.items():
            text.append(f"  {name:<{width}}  ")
            text.append(f"{state}\n", style=state_style(state))
    if daemon and action in ("up", "restart"):
        text.append(_still_running(outcome))
    return text


def _success_text(outcome: Mapping[str, Any], action: str) -> Text:
    text = Text()
    elapsed = float(outcome.get("elapsed") or 0.0)
    done = list(outcome.get("done") or [])
    already = list(outcome.get("already") or [])
    verb = {"up": "ready", "down": "stopped", "restart": "restarted"}.get(action, action)
    if not done and already:
        text.append(
            f"nothing to do: {len(already)} already {verb} ({', '.join(already)})\n",
            style="green",
        )
    elif not done:
        nothing = "nothing to do (nothing running)" if action == "down" else "nothing to do"
        text.append(nothing + "\n", style="green")
    else:
        text.append(f"{len(done)} {verb} in {elapsed:.2f}s", style="bold green")
        if already:
            text.append(f" ({len(already)} already {verb})", style="dim")
        started = list(outcome.get("dependencies_started") or [])
        if started:
            text.append(f" (also started what they need: {', '.join(started)})", style="dim")
        text.append("\n")
    return text


def _still_running(outcome: Mapping[str, Any]) -> Text:
    running = list(outcome.get("running") or [])
    if not running:
        return Text("nothing is left running\n", style="bold")
    text = Text(f"still running: {', '.join(running)}\n", style="bold")
    text.append("  `svcorch down` stops everything")
    if not outcome.get("rollback"):
        text.append("; `svcorch up --rollback` stops what a failed up started")
    text.append("\n")
    return text


def recreate_text(recreate: Mapping[str, Sequence[str]], *, planned: bool = False) -> Text:
    """``recreate web: env ENVIRONMENT development → production`` per changed service."""
    text = Text()
    verb = "would recreate" if planned else "recreate"
    for name, changes in recreate.items():
        text.append(f"{verb} {name}: ", style="yellow")
        text.append("; ".join(changes) + "\n")
    return text


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def status_table(rows: Sequence[Mapping[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("SERVICE", "STATE", "PID", "UPTIME", "RESTARTS", "DETAIL"):
        table.add_column(column)
    for row in rows:
        state = str(row["state"])
        table.add_row(
            str(row["service"]),
            Text(state, style=state_style(state)),
            str(row["pid"] or ""),
            _age(row.get("uptime")),
            str(row.get("restarts") or 0),
            _detail_with_drift(row),
        )
    return table


def _detail_with_drift(row: Mapping[str, Any]) -> Text:
    text = Text(str(row.get("detail") or ""))
    changed = row.get("changed_on_disk") or []
    if changed:
        text.append(" " if text else "")
        text.append(f"[changed on disk: {'; '.join(changed)}; `svcorch up` applies]", "yellow")
    return text


def analysis_text(analysis: Mapping[str, Any]) -> Text:
    """The critical chain, last-ready first (as systemd-analyze prints it), then the slowest
    services, each under column headers."""
    text = Text()
    chain = analysis.get("critical_chain") or []
    if not chain:
        text.append("no start-up recorded yet: run `svcorch up` first\n")
        return text
    text.append(f"ready after {float(analysis['total']):.2f}s; the critical chain:\n", style="bold")
    width = max(18, *(len(str(link["service"])) for link in chain))
    text.append(f"  {'SERVICE':<{width}} {'STARTED':>9} {'READY':>9} {'TOOK':>9}\n", style="bold")
    for link in reversed(chain):
        text.append(f"  {link['service']:<{width}}", style="cyan")
        text.append(
            f" {float(link['started']):8.3f}s {float(link['ready']):8.3f}s"
            f" {float(link['took']):8.3f}s\n"
        )
    durations = analysis.get("durations") or {}
    if durations:
        text.append("slowest start -> ready:\n", style="bold")
        text.append(f"  {'SERVICE':<{width}} {'TOOK':>9}\n", style="bold")
        for name, took in sorted(durations.items(), key=lambda kv: -float(kv[1]))[:10]:
            text.append(f"  {name:<{width}} {float(took):8.3f}s\n")
    text.append("(STARTED and READY: seconds after the first start of that up)\n", style="dim")
    return text


# -- check -------------------------------------------------------------------------------------


def check_table(rows: Sequence[Any]) -> Any:
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("SERVICE", "PROBE", "RESULT", "LATENCY", "DETAIL"):
        table.add_column(column, justify="right" if column == "LATENCY" else "left")
    for row in rows:
        table.add_row(
            row.service,
            row.probe,
            Text("ok", style="green") if row.ok else Text("FAIL", style="bold red"),
            f"{row.latency_ms:.1f} ms",
            row.detail,
        )
    if not rows:
        table.add_row("(no service with a readiness probe selected)", "", "", "", "")
    return table


def round_line(number: int, rows: Sequence[Any], changes: Sequence[Any]) -> Text:
    import time

    failing = [r for r in rows if not r.ok]
    text = Text(time.strftime("%Y-%m-%d %H:%M:%S "), style="dim")
    text.append(f"round {number}: ")
    text.append(
        f"{len(rows) - len(failing)}/{len(rows)} ok", style="green" if not failing else "bold red"
    )
    for row in failing:
        text.append(f"; {row.service} failing: {row.detail}", style="red")
    for change in changes:
        if change.ok:
            text.append(f"; {change.service} recovered", style="green")
    return text


def delivery_line(delivery: Any) -> Text:
    """One notification attempt: sent, failed and retrying, or given up."""
    about = f"{delivery.service} {delivery.event}"
    if delivery.ok:
        text = Text(f"  notified {delivery.notifier} about {about}", style="dim")
        if delivery.attempts > 1:
            text.append(f" (attempt {delivery.attempts})")
        return text
    text = Text(f"  notifying {delivery.notifier} about {about} failed", style="yellow")
    if delivery.retry_in is not None:
        text.append(
            f" (attempt {delivery.attempts}): {delivery.detail}; retry in {delivery.retry_in:g}s"
        )
    else:
        text.append(f", gave up after {_count(delivery.attempts, 'attempt')}: {delivery.detail}")
    return text


SEVERITY_STYLES = {"info": "", "warning": "yellow", "error": "red", "critical": "bold red"}


def journal_line(record: Mapping[str, Any], width: int = 16) -> Text:
    """One event of ``svcorch events``:
    ``2024-05-02 10:00:00.123 WARNING  worker  exited  restarting in 0.05s: ...``."""
    import time

    moment = float(record["time"])
    millis = int(moment * 1000) % 1000
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(moment)) + f".{millis:03d}"
    severity = str(record["severity"])
    line = Text(stamp + " ", style="dim")
    line.append(f"{severity.upper():<8} ", style=SEVERITY_STYLES.get(severity, "bold red"))
    line.append(f"{record['service']:<{width}} ", style="bold")
    detail = str(record.get("detail") or "")
    kind = f"{record['kind']:<15} " if detail else str(record["kind"])
    line.append(kind, style=SEVERITY_STYLES.get(severity, "bold red"))
    line.append(detail)
    return line
