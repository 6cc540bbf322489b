"""Time load + validate + plan on a generated 2,000-service catalogue (goal: under 1 s).

    .venv/bin/python benchmarks/bench_catalogue.py [--services 2000] [--runs 7] [--profile]

The catalogue has layers of services; each depends on a few services of earlier layers
(list, short and full forms), has a tcp probe, interpolated ports and env, restart and stop
settings. One run is what ``svcorch up --dry-run`` does before printing: read and validate the
file (``svcorch.catalogue.load``: YAML with positions, interpolation, pydantic, dependency and
cycle checks), build the ``ServiceGraph`` and make the start plan.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import statistics
import tempfile
import time
from pathlib import Path

from svcorch import catalogue, plan
from svcorch.graph import ServiceGraph

LAYERS = 20


def generate(services: int, seed: int = 2) -> str:
    rng = random.Random(seed)
    per_layer = max(1, services // LAYERS)
    lines = [
        "version: 1",
        "name: bench",
        "env:",
        "  BASE_PORT: ${BASE_PORT:-20000}",
        "  REGION: ${REGION:-eu}",
        "x-restart: &restart {policy: on-failure, max_restarts: 3, backoff: 500ms}",
        "services:",
    ]
    names: list[list[str]] = []
    for index in range(services):
        layer = min(index // per_layer, LAYERS - 1)
        if len(names) <= layer:
            names.append([])
        name = f"svc-{layer:02d}-{index:05d}"
        names[layer].append(name)
        lines += [
            f"  {name}:",
            f"    command: run-service --name {name} --region ${{REGION:-eu}}",
            f'    ready: {{type: tcp, port: "${{PORT_{index}:-{10000 + index}}}", timeout: 30s}}',
            f"    env: {{SERVICE_PORT: '{10000 + index}', CONF: 'conf.${{REGION:-eu}}.{index}'}}",
            "    restart: *restart",
            "    stop: {signal: TERM, timeout: 5s}",
        ]
        earlier = [n for layer_names in names[:layer] for n in layer_names]
        if earlier:
            needs = rng.sample(earlier, k=min(len(earlier), rng.randint(2, 5)))
            form = index % 3
            if form == 0:
                lines.append(f"    depends_on: [{', '.join(needs)}]")
            else:
                lines.append("    depends_on:")
                for need in needs:
                    condition = "started" if rng.random() < 0.2 else "ready"
                    spelled = condition if form == 1 else f"{{condition: {condition}}}"
                    lines.append(f"      {need}: {spelled}")
    return "\n".join(lines) + "\n"


def one_run(path: Path) -> tuple[float, int, int]:
    started = time.perf_counter()
    loaded = catalogue.load(path, environ={})
    graph = ServiceGraph.from_catalogue(loaded)
    start_plan = plan.up_plan(loaded, graph, plan.select_up(loaded, graph, [], []))
    elapsed = time.perf_counter() - started
    return elapsed, len(start_plan.order), len(start_plan.generations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="cProfile one run, top 25")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "services.yaml"
        path.write_text(generate(args.services), encoding="utf-8")
        size = path.stat().st_size
        one_run(path)  # warm up: imports, probe registry, pydantic's validators
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(one_run, path)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        timings = []
        for _ in range(args.runs):
            elapsed, services, waves = one_run(path)
            timings.append(elapsed)
    print(
        f"{services} services, {waves} waves, {size / 1e6:.1f} MB of YAML: load + validate + plan"
        f" min {min(timings):.3f} s, median {statistics.median(timings):.3f} s"
        f" over {args.runs} runs (goal < 1 s)"
    )


if __name__ == "__main__":
    main()
