"""The supervisor daemon: one per state directory, owning the service processes.

``python -m svcorch.supervisor --state-dir DIR --file services.yaml`` is started by the CLI,
in its own session, with the requesting command's environment. It adopts what a previous
daemon left running, serves the control socket, and exits once a ``down`` of everything has
left nothing running (or on SIGTERM, after stopping everything).

Signal handlers only record; the loop acts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import hashlib
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from svcorch import catalogue as catalogue_module
from svcorch import control, limits, plan
from svcorch.engine import Engine, Event
from svcorch.errors import CatalogueError, DaemonError, SvcorchError
from svcorch.model import Catalogue
from svcorch.state import StateFile, StateLayout, StateLock, ensure_state_dir

log = logging.getLogger("svcorch.daemon")

ACTIONS = ("up", "down", "restart")
_M_ARENA_MAX = -8  # from glibc's <malloc.h>
LOCK_WAIT = 10.0  # seconds an exiting daemon may take to let go of the state dir


def load_catalogue(file: Path, environ: Mapping[str, str], state_dir: Path) -> Catalogue:
    env = dict(environ)
    env["SVCORCH_STATE_DIR"] = str(state_dir)
    return catalogue_module.load(file, environ=env)


class Daemon:
    """Serves the control socket; owns the engine; lives while it supervises something.

    It exits when, after an up, down or restart, nothing is left running or starting and no
    other client is connected: after a down of everything, but also after an up that failed
    entirely or was refused (a typo in a name must not leave a daemon behind). A ping or a
    status never ends it.
    """

    def __init__(self, layout: StateLayout, file: Path) -> None:
        self.layout = layout
        self.file = file
        self.engine: Engine | None = None
        self.finished = asyncio.Event()
        self.acted = False  # an up, down or restart was asked for
        self.shutting_down = False  # a signal: everything is being stopped, then we exit
        self.busy = 0
        self._loaded: tuple[object, ...] | None = None  # what the catalogue was loaded from
        self._env_files: list[Path] = []

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            self._reload({"file": str(self.file), "environ": dict(os.environ)})
        except CatalogueError as exc:
            # serve anyway: the request that started us gets every problem, then we exit
            log.error("the catalogue does not load:\n%s", exc)
        with contextlib.suppress(FileNotFoundError):
            self.layout.socket.unlink()  # a stale socket of a killed daemon; we hold the lock
        old_umask = os.umask(0o177)
        try:
            server = await asyncio.start_unix_server(
                self._serve, path=str(self.layout.socket), limit=control.MAX_LINE
            )
        finally:
            os.umask(old_umask)
        os.chmod(self.layout.socket, 0o600)
        log.info("listening on %s (pid %d)", self.layout.socket, os.getpid())
        async with server:
            await self.finished.wait()
            server.close()
        with contextlib.suppress(FileNotFoundError):
            self.layout.socket.unlink()
        if self.engine is not None:
            await self.engine.close()
        log.info("exiting")
        return 0

    def _on_signal(self, sig: int) -> None:
        log.info("got %s: stopping everything", signal.Signals(sig).name)
        if not self.shutting_down:
            self.shutting_down = True
            task = asyncio.get_running_loop().create_task(self._down_everything())
            task.add_done_callback(lambda _: self.finished.set())

    async def _down_everything(self) -> None:
        if self.engine is None:
            return
        await self.engine.down(self.engine.graph.names)
        await self.engine.flush()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.busy += 1
        acting = False
        try:
            line = await reader.readline()
            if not line:
                return
            request = control.decode(line)
            acting = request.get("op") in ACTIONS
            await self._dispatch(request, writer)
        except SvcorchError as exc:
            await self._send(writer, {"error": str(exc), "exit_code": exc.exit_code})
        except (ConnectionError, asyncio.IncompleteReadError):
            log.info("client went away")
        except Exception as exc:
            # an unexpected error is logged with its traceback and reported as one line;
            # the daemon keeps supervising everything else
            log.exception("request failed")
            await self._send(
                writer,
                {
                    "error": f"internal error in the daemon: "
                    f"{type(exc).__name__}: {exc} (see daemon.log)"
                },
            )
        finally:
            self.busy -= 1
            with contextlib.suppress(Exception):
                writer.close()
                await writer.wait_closed()
            # only an action can leave nothing to supervise; a ping or status never ends us
            if acting and self._idle():
                self.finished.set()

    async def _send(self, writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionError):
            writer.write(control.encode(message))
            await writer.drain()

    def _reload(self, request: dict[str, Any]) -> Engine:
        """The engine over the request's catalogue, loaded again only when it changed."""
        environ = request.get("environ")
        if not isinstance(environ, dict):
            environ = dict(os.environ)
        file = Path(str(request.get("file") or self.file))
        if self.engine is not None and self._source(file, environ) == self._loaded:
            return self.engine
        # a CatalogueError goes back to the client with every problem and exit code 2
        catalogue = load_catalogue(file, environ, self.layout.root)
        env_files = catalogue.env_file
        self._env_files = [
            catalogue.base_dir / name
            for name in ([env_files] if isinstance(env_files, str) else env_files or [])
        ]
        self._loaded = self._source(file, environ)
        if self.engine is None:
            self.engine = Engine(catalogue, self.layout, environ=environ)
            adopted = self.engine.adopt(StateFile(self.layout.state_file).load())
            if adopted:
                log.info("adopted %s", ", ".join(adopted))
            self.engine.start_housekeeping()
        else:
            self.engine.load(catalogue, environ)
        return self.engine

    async def _dispatch(self, request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        op = request.get("op")
        names = [str(n) for n in request.get("services") or []]
        profiles = [str(p) for p in request.get("profiles") or []]
        if op == "ping":
            await self._send(writer, {"result": {"ok": True, "pid": os.getpid()}})
            return
        if op not in control.OPS:
            raise DaemonError(f"unknown request {op!r}")
        if op == "status":
            engine = self.engine if self.engine is not None else self._reload(request)
            engine.graph.check_known(names)
            rows = [row.to_dict() for row in engine.status(names or None)]
            await self._send(writer, {"result": {"ok": True, "services": rows}})
            return
        self.acted = True
        if self.shutting_down and op in ("up", "restart"):
            raise DaemonError("the daemon is stopping everything (it got a signal); retry")
        engine = self._reload(request)
        timeout = request.get("timeout")
        stop_timeout = float(timeout) if isinstance(timeout, int | float) else None
        if op == "up":
            selected = plan.select_up(engine.catalogue, engine.graph, names, profiles)
        elif op == "down":
            selected = plan.select_down(engine.catalogue, engine.graph, names, profiles)
        else:
            selected = engine.graph.select_down(names)
        order = engine.graph.subgraph(selected).start_order()
        await self._send(writer, {"accepted": {"op": op, "services": order}})

        queue: asyncio.Queue[Event] = asyncio.Queue()
        unsubscribe = engine.subscribe(queue.put_nowait)
        forwarder = asyncio.get_running_loop().create_task(self._forward(queue, writer))
        try:
            if op == "up":
                outcome = await engine.up(selected, rollback=bool(request.get("rollback")))
            elif op == "down":
                outcome = await engine.down(selected, timeout=stop_timeout)
            else:
                outcome = await engine.restart(names, timeout=stop_timeout)
        finally:
            unsubscribe()
            await queue.join()
            forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await forwarder
        await engine.flush()  # what the client reads in state.json next is this outcome's
        result = outcome.to_dict()
        # this client is the last one and nothing is left to supervise: we exit after it
        result["daemon_exiting"] = os.getpid() if self._idle(clients=1) else None
        await self._send(writer, {"result": result})
        if result["daemon_exiting"] is None:
            release_memory()  # after the answer: a full collection takes a while

    async def _forward(self, queue: asyncio.Queue[Event], writer: asyncio.StreamWriter) -> None:
        while True:
            event = await queue.get()
            try:
                await self._send(writer, {"event": event.to_dict()})
            finally:
                queue.task_done()

    def _source(self, file: Path, environ: dict[str, Any]) -> tuple[object, ...]:
        """What a load depends on: the file, its env files (as they were), the environment."""
        stamps = tuple(_stamp(path) for path in [file, *self._env_files])
        return (stamps, tuple(sorted(environ.items())))

    def _idle(self, clients: int = 0) -> bool:
        """Nothing to supervise and nobody (but ``clients``) connected, after an action."""
        if not self.acted or self.busy != clients:
            return False
        return self.engine is None or not self.engine.anything_running()


def _stamp(path: Path) -> tuple[str, str]:
    """The file's content digest: cheap next to YAML + validation, and exact (mtimes are
    coarse enough to miss an edit made right after the previous load). Read as the loader
    reads it: a FIFO or ``/dev/zero`` named by ``-f`` must not hang the daemon here."""
    try:
        content = limits.read_regular_file(path, limits.MAX_CATALOGUE_BYTES)
        digest = hashlib.blake2b(content, digest_size=16).hexdigest()
    except (OSError, limits.Unreadable):
        digest = ""  # not the digest of anything: the next load says what is wrong
    return (str(path), digest)


def _detach(layout: StateLayout) -> None:
    """Fork once more so the daemon is nobody's child but init's; the parent prints its pid.

    The starter reaps the intermediate at once and reads the pid from its stdout, which the
    daemon itself must not hold open: it writes to its log instead.
    """
    pid = os.fork()
    if pid != 0:
        os.write(1, f"{pid}\n".encode("ascii"))
        os._exit(0)
    fd = os.open(layout.daemon_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.close(fd)


def _lean_malloc() -> None:
    """Keep glibc from giving each probe thread its own heap arena.

    A daemon lives for days with a burst of probe threads at each up; per-thread arenas
    would keep megabytes resident after the burst. Two arenas serve a loop and its workers.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, 2)


def release_memory() -> None:
    """Give freed heap pages back to the OS after a burst (an up of many services)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def _take_lock(lock: StateLock, layout: StateLayout) -> bool:
    """The state dir's lock, waiting while a daemon that is exiting still holds it.

    False when another daemon serves this state dir (the client talks to that one) or the
    holder did not let go within LOCK_WAIT seconds (a foreground up: the client says so).
    """
    deadline = time.monotonic() + LOCK_WAIT
    delay = 0.005
    while not lock.try_acquire():
        if _another_daemon_serves(layout):
            log.info("another svcorch daemon serves %s; exiting", layout.root)
            return False
        if time.monotonic() > deadline:
            holder = lock.holder_pid()
            log.error(
                "%s is locked by pid %s (another svcorch) for over %gs; exiting",
                layout.lock,
                holder if holder is not None else "?",
                LOCK_WAIT,
            )
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return True


def _another_daemon_serves(layout: StateLayout) -> bool:
    connection = control.connect(layout.socket, timeout=0.5)
    if connection is None:
        return False
    with connection:
        try:
            connection.request({"op": "ping"})
        except (SvcorchError, OSError):
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="svcorch-supervisor")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument(
        "--detach",
        action="store_true",
        help="fork once more so the daemon is nobody's child but init's; print its pid",
    )
    args = parser.parse_args(argv)
    layout = StateLayout(ensure_state_dir(args.state_dir.absolute()))
    if args.detach:
        _detach(layout)
    _lean_malloc()
    logging.basicConfig(
        filename=str(layout.daemon_log),
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
    )
    logging.Formatter.converter = time.localtime
    lock = StateLock(layout.lock, blocking=False)
    if not _take_lock(lock, layout):
        return 0
    try:
        return asyncio.run(Daemon(layout, args.file.absolute()).run())
    except SvcorchError as exc:
        log.error("%s", exc)
        sys.stderr.write(f"svcorch daemon: {exc}\n")
        return exc.exit_code
    except Exception:
        log.exception("daemon crashed")
        return 3
    finally:
        lock.release()


if __name__ == "__main__":
    code = main()
    logging.shutdown()
    # a probe attempt still running in a worker thread is bounded but need not be waited for
    os._exit(code)
