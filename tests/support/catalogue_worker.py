"""Run svcorch's catalogue commands on many files in one interpreter, each case measured.

    python catalogue_worker.py ADDRESS_SPACE_BYTES WARM_UP_CATALOGUE

Reads one JSON request per line on stdin: ``{"cwd": DIR, "file": PATH}``; loads the file as
every command does (``catalogue.load`` and the graph), sorting what it raises as the CLI's
error boundary does (a ``SvcorchError`` is its exit code and lines, anything else is exit 3);
when the file is valid, runs ``config``, ``graph --dot`` and ``up --dry-run`` through the CLI
itself. Answers one JSON line per request with each step's exit code, output (its first
lines), wall and CPU time, and the peak RSS of the case.

The load is called directly rather than through ``svcorch validate`` because the CLI's own
start (typer building its commands) costs four times the load of a small file, and a
thousand cases have to fit in the suite's time budget.

The address space is capped (RLIMIT_AS) once svcorch is imported, so an input that tried to
take gigabytes fails here with a MemoryError (an exit 3) instead of taking the machine. The
peak RSS is per case: the kernel's high-water mark is reset before each one
(``/proc/self/clear_refs``), so one interpreter measures a thousand cases.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import os
import resource
import sys
import time
import traceback
from typing import Any

from svcorch import catalogue, cli
from svcorch.errors import CatalogueError, SvcorchError
from svcorch.graph import ServiceGraph

FOLLOW_UPS = (["config"], ["graph", "--dot"], ["up", "--dry-run"])
LINES_KEPT = 150  # lines of each command's output sent back, each cut to LINE_KEPT characters
LINE_KEPT = 400


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")  # 5: reset the peak RSS (VmHWM) to the current RSS
    except OSError:
        return False
    return True


def _peak_rss() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _result(argv: list[str], code: int, text: str, clock: tuple[float, float]) -> dict[str, Any]:
    lines = text.splitlines()
    return {
        "argv": argv,
        "code": code,
        "seconds": time.perf_counter() - clock[0],
        "cpu": time.process_time() - clock[1],
        "lines": [line[:LINE_KEPT] for line in lines[:LINES_KEPT]],
        "line_count": len(lines),
        "raised": None,
    }


def _load(file: str) -> dict[str, Any]:
    """What ``svcorch -f FILE validate`` decides, without the CLI's start-up."""
    environ = dict(os.environ)  # the CLI adds the state dir; the worker's parent set it
    clock = (time.perf_counter(), time.process_time())
    argv = ["-f", file, "validate"]
    try:
        ServiceGraph.from_catalogue(catalogue.load(file, environ=environ))
    except CatalogueError as exc:  # as cli.run prints it: one line per problem
        return _result(argv, exc.exit_code, "\n".join(str(p) for p in exc.problems), clock)
    except SvcorchError as exc:
        return _result(argv, exc.exit_code, f"svcorch: {exc}", clock)
    except Exception as exc:  # past the boundary: what cli.run calls exit 3
        result = _result(argv, 3, f"svcorch: internal error: {exc!r}", clock)
        result["raised"] = "".join(traceback.format_exception(exc))
        return result
    return _result(argv, 0, "", clock)


def _run(argv: list[str]) -> dict[str, Any]:
    """One command through the CLI, its error boundary included."""
    output = io.StringIO()
    clock = (time.perf_counter(), time.process_time())
    raised = None
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        try:
            code = cli.run(argv)
        except BaseException as exc:  # anything past the boundary is the finding
            code, raised = -1, "".join(traceback.format_exception(exc))
    result = _result(argv, code, output.getvalue(), clock)
    result["raised"] = raised
    return result


def _case(request: dict[str, Any]) -> dict[str, Any]:
    os.chdir(request["cwd"])
    # young garbage only: a full collection of this heap takes 40 ms, more than a case; what
    # it would free can only make the peak below look higher, never lower
    gc.collect(1)
    exact = _reset_peak()
    file = request["file"]
    runs = [_load(file)]
    if runs[0]["code"] == 0:
        runs += [_run(["-f", file, *command]) for command in FOLLOW_UPS]
    return {"runs": runs, "peak_rss": _peak_rss(), "peak_exact": exact}


def main() -> None:
    limit = int(sys.argv[1])
    # a valid catalogue through every command first: it imports what every later case uses
    warm_up = ["-f", sys.argv[2]]
    _load(sys.argv[2])
    for command in (["validate"], *FOLLOW_UPS):
        _run([*warm_up, *command])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        print(json.dumps(_case(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
