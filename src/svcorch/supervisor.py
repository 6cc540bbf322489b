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
from dataclasses import replace
from pathlib import Path
from typing import Any

from svcorch import catalogue as catalogue_module
from svcorch import control, logconfig, plan
from svcorch import project as project_module
from svcorch.control import Request
from svcorch.engine import Engine, Event
from svcorch.errors import CatalogueError, DaemonError, PreflightFailed, SvcorchError
from svcorch.eventlog import EventLog
from svcorch.graph import ServiceGraph
from svcorch.model import Catalogue
from svcorch.redaction import NAME_KEYS, Redactor
from svcorch.state import StateCorrupt, StateFile, StateLayout, StateLock, ensure_state_dir
from svcorch.statedir import open_private, secure

log = logging.getLogger("svcorch.daemon")

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

    def __init__(
        self,
        layout: StateLayout,
        file: Path,
        project: str,
        log_formatter: logconfig.RedactingFormatter | None = None,
    ) -> None:
        self.layout = layout
        self.file = file
        self.project = project  # the state dir's project: requests of another are refused
        self._exit_when_alone = False  # an action left nothing to do while others were connected
        # every message to a client and every line of daemon.log goes through the redactor
        # of the catalogue loaded last (before one loads: the environment's secrets)
        self.log_formatter = log_formatter
        self.redactor = Redactor.for_environment(os.environ)
        if log_formatter is not None:
            log_formatter.redactor = self.redactor
        self.engine: Engine | None = None
        self.finished = asyncio.Event()
        self.acted = False  # an up, down or restart was asked for
        self.shutting_down = False  # a signal: everything is being stopped, then we exit
        self.busy = 0
        self._loaded: tuple[object, ...] | None = None  # what the snapshot was loaded from
        self.events = EventLog(layout.root)  # journal, `events` followers, alerts
        self._env_files: list[Path] = []
        # the file on disk, loaded with the snapshot's environment, for status's drift marks
        self._on_disk: tuple[tuple[object, ...], Catalogue | None] | None = None
        self.notices: list[str] = []  # for the next client that asks for a status or an action
        self._state_seen: tuple[int, int, int] | None = None  # state.json as last verified

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            self._snapshot(Request(op="up", file=str(self.file), environ=dict(os.environ)))
        except CatalogueError as exc:
            # serve anyway: the request that started us gets every problem, then we exit
            log.error("the catalogue does not load:\n%s", exc)
        with contextlib.suppress(FileNotFoundError):
            self.layout.socket.unlink()  # a stale socket of a killed daemon; we hold the lock
        old_umask = os.umask(0o177)
        try:
            # the limit bounds what one client can make us buffer (a request line, at most)
            server = await asyncio.start_unix_server(
                self._serve, path=str(self.layout.socket), limit=control.MAX_REQUEST
            )
        finally:
            os.umask(old_umask)
        os.chmod(self.layout.socket, 0o600)
        log.info("listening on %s (pid %d)", self.layout.socket, os.getpid())
        async with server:
            await self.finished.wait()
            await self.events.release_followers()
            server.close()
        with contextlib.suppress(FileNotFoundError):
            self.layout.socket.unlink()
        if self.engine is not None:
            await self.engine.close()
        await self.events.close()
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
        acting = following = False
        try:
            line = await self._read_request(reader)
            if line is None:
                return
            request = Request.parse(control.decode(line))
            acting = request.op in ("up", "down", "restart")
            if request.op == "events":
                following = True  # a follower neither keeps the daemon alive nor holds it up
                self.busy -= 1
                wanted = {"services": list(request.services), "since": request.since}
                await self.events.serve(wanted, reader, lambda m: self._send(writer, m))
                return
            if request.op != "ping":
                # re-checked on every command: the user may have loosened or broken them
                secure(self.layout.root)
                await self._settle_state_file()
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
            self.busy -= 0 if following else 1
            with contextlib.suppress(Exception):
                writer.close()
                await asyncio.wait_for(writer.wait_closed(), control.SEND_TIMEOUT)
            # only an action can leave nothing to supervise (a status never ends us); one
            # that finished while another client was connected (idle or slow) leaves the
            # exit to whichever client leaves last
            if acting and self._idle(clients=self.busy) and self.busy:
                self._exit_when_alone = True
            if (acting or self._exit_when_alone) and self._idle():
                self.finished.set()

    async def _read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        """The request line; None when the client sent nothing (a liveness probe of the
        socket) or nothing whole in time. A client that never sends, or sends half a line
        and waits, holds nothing but its own connection, and only for REQUEST_TIMEOUT."""
        try:
            return await asyncio.wait_for(reader.readuntil(b"\n"), control.REQUEST_TIMEOUT)
        except TimeoutError:
            log.info("dropped a client that sent no whole request in %gs", control.REQUEST_TIMEOUT)
            return None
        except asyncio.IncompleteReadError as exc:
            # half a line, then the client shut its side: judge what it sent
            return exc.partial or None
        except asyncio.LimitOverrunError:
            raise control.BadRequest(
                f"request longer than {control.MAX_REQUEST >> 20} MiB (or not a line)"
            ) from None

    async def _send(self, writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
        """Write one line; a client that leaves answers unread for SEND_TIMEOUT is dropped
        (its request goes on: its outcome is in status and state.json)."""
        if writer.is_closing():
            return
        # the last defence: details are scrubbed where they are made, but a message also
        # carries log tails and error texts
        message = self.redactor.data(message, keep=NAME_KEYS)
        with contextlib.suppress(ConnectionError):
            writer.write(control.encode(message))
            try:
                await asyncio.wait_for(writer.drain(), control.SEND_TIMEOUT)
            except TimeoutError:
                log.info("dropped a client that read nothing for %gs", control.SEND_TIMEOUT)
                writer.transport.abort()

    async def _settle_state_file(self) -> None:
        """Set aside a state.json that was corrupted while this daemon ran, and write it
        again at once from the engine's records (which are the truth: nothing is lost)."""
        if self.engine is None:
            return
        await self.engine.flush()
        # from here to the end no await: no state write can start in between
        path = self.layout.state_file
        try:
            status = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            return
        seen = (status.st_ino, status.st_size, status.st_mtime_ns)
        if seen == self._state_seen:
            return  # verified already, and not replaced since
        state_file = StateFile(path)
        try:
            state_file.load()
        except StateCorrupt as exc:
            kept_as = state_file.set_aside(exc)
            self.engine.persist_now()
            self._tell(
                f"state file {path} was corrupt ({exc.reason}); kept it as {kept_as} and"
                " wrote it again from the daemon's own records (nothing was lost)"
            )
            status = os.stat(path, follow_symlinks=False)
            seen = (status.st_ino, status.st_size, status.st_mtime_ns)
        self._state_seen = seen

    def _tell(self, notice: str) -> None:
        log.warning("%s", notice)
        self.notices.append(notice)

    async def _send_notices(self, writer: asyncio.StreamWriter) -> None:
        """What the user must hear about (a state file set aside), once, to the next client
        that asked for more than a ping."""
        notices, self.notices = self.notices, []
        for notice in notices:
            await self._send(writer, {"notice": notice})

    # -- the deployment snapshot -------------------------------------------------------------
    #
    # An up resolves its caller's catalogue and environment once; that snapshot is what every
    # later start uses (restart, autorestart, liveness), whoever types the next command. Only
    # an up replaces it, recreating the running services whose definition changed.

    def _snapshot(self, request: Request) -> Engine:
        """The engine over the current snapshot; the first request of a daemon makes it."""
        if self.engine is None:
            self._deploy(request)
        assert self.engine is not None
        return self.engine

    def _deploy(self, request: Request) -> Engine:
        """The request's catalogue and environment become the snapshot (an up)."""
        environ = request.environ if request.environ is not None else dict(os.environ)
        file = Path(request.file) if request.file is not None else self.file
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
        self.file = file
        self.events.configure(catalogue, environ)
        if self.engine is None:
            self.engine = Engine(catalogue, self.layout, environ=environ)
            self.engine.subscribe(self.events)  # before adoption: its events are events too
            # a corrupt file is set aside and what it still held carried on; issue 8 point 1
            # (finding services again by their identity) plugs in here as `refind=`
            records, set_aside = StateFile(self.layout.state_file).load_or_set_aside()
            if set_aside is not None:
                self._tell(set_aside.message())
            adopted = self.engine.adopt(records)
            if adopted:
                log.info("adopted %s", ", ".join(adopted))
            self.engine.start_housekeeping()
        else:
            self.engine.load(catalogue, environ)
        # the engine built it from this catalogue and environment; we use the same
        self.redactor = self.engine.redactor
        if self.log_formatter is not None:
            self.log_formatter.redactor = self.redactor
        return self.engine

    def _drift_on_disk(self, engine: Engine) -> dict[str, list[str]]:
        """What an up with the snapshot's environment would recreate: the catalogue on disk
        against what runs. Loaded again only when the file (or an env file) changed."""
        key = self._source(self.file, engine.environ)
        if self._on_disk is None or self._on_disk[0] != key:
            try:
                on_disk: Catalogue | None = load_catalogue(
                    self.file, engine.environ, self.layout.root
                )
            except SvcorchError:
                on_disk = None  # `validate` says why; status still answers
            self._on_disk = (key, on_disk)
        catalogue = self._on_disk[1]
        return {} if catalogue is None else engine.drift(catalogue)

    async def _dispatch(self, request: Request, writer: asyncio.StreamWriter) -> None:
        op = request.op  # one of control.OPS: Request.parse refused anything else
        if op == "ping":
            await self._send(writer, {"result": {"ok": True, "pid": os.getpid()}})
            return
        self._check_identity(request)
        if op == "status":
            result = self._status(request)
            await self._send_notices(writer)
            await self._send(writer, {"result": result})
        elif op == "plan":
            await self._send(writer, {"result": self._plan(request)})
        else:
            await self._act(request, writer)

    def _status(self, request: Request) -> dict[str, Any]:
        engine = self._snapshot(request)
        names = list(request.services)
        engine.graph.check_known(names)
        drift = self._drift_on_disk(engine)
        rows = []
        for row in engine.status(names or None):
            entry = row.to_dict()
            entry["changed_on_disk"] = drift.get(row.service, [])
            rows.append(entry)
        return {"ok": True, "services": rows}

    def _plan(self, request: Request) -> dict[str, Any]:
        """up --dry-run: what an up with this request's catalogue and environment would
        recreate, without acting."""
        engine = self._snapshot(request)
        candidate = load_catalogue(
            Path(request.file) if request.file is not None else self.file,
            request.environ if request.environ is not None else dict(os.environ),
            self.layout.root,
        )
        names = list(request.services)
        profiles = list(request.profiles)
        selected = plan.select_up(
            candidate, ServiceGraph.from_catalogue(candidate), names, profiles
        )
        return {"ok": True, "recreate": engine.drift(candidate, selected)}

    async def _act(self, request: Request, writer: asyncio.StreamWriter) -> None:
        op = request.op
        names = list(request.services)
        profiles = list(request.profiles)
        self.acted = True
        if self.shutting_down and op in ("up", "restart"):
            raise DaemonError("the daemon is stopping everything (it got a signal); retry")
        engine = self._deploy(request) if op == "up" else self._snapshot(request)
        await self._send_notices(writer)
        stop_timeout = request.timeout
        recreate: dict[str, list[str]] = {}
        if op == "up":
            selected = plan.select_up(engine.catalogue, engine.graph, names, profiles)
            if not request.no_recreate:
                recreate = engine.drift(engine.catalogue, selected)
        elif op == "down":
            selected = plan.select_down(engine.catalogue, engine.graph, names, profiles)
        else:
            selected = engine.graph.select_down(names)
        await self._preflight(engine, op, selected)
        order = engine.graph.subgraph(selected).start_order()
        await self._send(writer, {"accepted": {"op": op, "services": order}})

        queue: asyncio.Queue[Event] = asyncio.Queue()
        unsubscribe = engine.subscribe(queue.put_nowait)
        forwarder = asyncio.get_running_loop().create_task(self._forward(queue, writer))
        try:
            if op == "up":
                recreated = await engine.recreate(recreate, timeout=stop_timeout)
                outcome = await engine.up(selected, rollback=request.rollback)
                if not recreated.ok:
                    outcome = replace(outcome, ok=False, failed=recreated.failed + outcome.failed)
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
        if recreate:
            result["recreated"] = recreate
        # this client is the last one and nothing is left to supervise: we exit after it
        result["daemon_exiting"] = os.getpid() if self._idle(clients=1) else None
        await self._send(writer, {"result": result})
        if result["daemon_exiting"] is None:
            release_memory()  # after the answer: a full collection takes a while

    def _check_identity(self, request: Request) -> None:
        """One state dir, one project, one catalogue: a copy of the catalogue (or another
        project's) must not redefine the services this daemon runs."""
        project = request.project
        if project is None:
            return  # a client from before projects: it knows only the state dir
        file = Path(request.file) if request.file is not None else self.file
        cwd = Path(request.cwd or "/")  # paths in the message as the user sees them
        if project != self.project:
            raise project_module.another_project(self.layout.root, self.project, project, file, cwd)
        if file.resolve() != self.file.resolve():
            raise project_module.other_catalogue(self.layout.root, project, self.file, file, cwd)

    @staticmethod
    async def _preflight(engine: Engine, op: str, selected: set[str]) -> None:
        """Refuse an up or restart that would fail for certain, before starting anything."""
        if op == "up":
            problems = await engine.preflight(selected)
        elif op == "restart":
            starting = engine.graph.select_up(selected)
            problems = await engine.preflight(starting, restarting=selected)
        else:
            return
        if problems:
            raise PreflightFailed(problems)

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
    coarse enough to miss an edit made right after the previous load)."""
    try:
        digest = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
    except OSError:
        digest = ""
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
    fd = open_private(layout.daemon_log, os.O_WRONLY | os.O_APPEND)
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
    parser.add_argument("--project", help="the project of the command that starts it")
    parser.add_argument(
        "--detach",
        action="store_true",
        help="fork once more so the daemon is nobody's child but init's; print its pid",
    )
    args = parser.parse_args(argv)
    try:
        layout = StateLayout(ensure_state_dir(args.state_dir.absolute()))
    except SvcorchError as exc:  # an unsafe state dir: one line for the starter to show
        sys.stderr.write(f"svcorch daemon: {exc}\n")
        return exc.exit_code
    if args.detach:
        _detach(layout)
    _lean_malloc()
    # logging would create it with the umask's mode (0644): make sure it exists, 0600
    os.close(open_private(layout.daemon_log, os.O_WRONLY | os.O_APPEND))
    # svcorch's own records only (a client library's words are in the probe's detail),
    # secrets masked
    formatter = logconfig.to_daemon_log(layout.daemon_log)
    logging.Formatter.converter = time.localtime
    lock = StateLock(layout.lock, blocking=False)
    if not _take_lock(lock, layout):
        return 0
    file = args.file.absolute()
    # the state dir's project, recorded by the first daemon in it; a daemon started for
    # another project (two commands racing) serves the recorded one and refuses the other
    project = (
        project_module.claim(layout.root, args.project)
        if args.project
        else project_module.owner_of(layout.root) or str(file)
    )
    try:
        return asyncio.run(Daemon(layout, file, project, formatter).run())
    except SvcorchError as exc:
        log.error("%s", exc)
        sys.stderr.write(f"svcorch daemon: {formatter.redactor.text(str(exc))}\n")
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
