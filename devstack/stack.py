"""Starting, probing and stopping the components, idempotently, one lock for all callers.

`up` on a healthy stack does nothing but probe; a pid file whose process is gone is cleaned; a
port taken by something devstack did not start is reported instead of fought over. Components
start in parallel (Kafka's JVM dominates), and each waits until it answers its own protocol.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from devstack import endpoints, paths, process
from devstack.component import Component, Say
from devstack.dns_server import KnotServer, UnboundResolver
from devstack.errors import StackError
from devstack.ferretdb import FerretDB
from devstack.kafka import KafkaBroker
from devstack.postgres import PostgreSQL
from devstack.smtp import MailboxComponent

COMPONENTS: dict[str, type[Component]] = {
    "kafka": KafkaBroker, "postgres": PostgreSQL, "mongo": FerretDB, "smtp": MailboxComponent,
    "dns-auth": KnotServer, "dns": UnboundResolver,
}  # fmt: skip
"""Start order; stop runs in reverse."""
OPTIONAL = ("postgres",)
"""Started only when another component requires it (PostgreSQL: FerretDB's PostgreSQL backend)."""
ALIASES = {
    "ferretdb": "mongo", "mongodb": "mongo", "mailbox": "smtp", "mail": "smtp", "broker": "kafka",
    "postgresql": "postgres",
    "knot": "dns-auth", "authoritative": "dns-auth", "unbound": "dns", "resolver": "dns", "dns-resolver": "dns",
}  # fmt: skip


def resolve(names: Iterable[str] | None) -> list[str]:
    """Canonical component names in start order; None or empty means all but the `OPTIONAL` ones."""
    default = [name for name in COMPONENTS if name not in OPTIONAL]
    if names is None:
        return default
    wanted = set()
    for raw in names:
        name = ALIASES.get(raw.strip().lower(), raw.strip().lower())
        if not name:
            continue
        if name not in COMPONENTS:
            raise StackError(f"unknown component {raw!r}; choose from {', '.join(COMPONENTS)}")
        wanted.add(name)
    return [name for name in COMPONENTS if name in wanted] or default


def with_requirements(names: list[str]) -> list[str]:
    """`names` plus every component they need (see Component.requires), in start order."""
    wanted = set(names)
    pending = list(names)
    while pending:
        for required in COMPONENTS[pending.pop()](endpoints.current()).requires:
            if required not in wanted:
                wanted.add(required)
                pending.append(required)
    return [name for name in COMPONENTS if name in wanted]


def component(name: str) -> Component:
    """A component object for the ports currently configured in the environment."""
    (canonical,) = resolve([name])
    return COMPONENTS[canonical](endpoints.current())


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- start ----------------------------------------------------------------------------------------


def _wait_ready(comp: Component, pid: int) -> None:
    deadline = time.monotonic() + comp.ready_timeout
    while not comp.healthy():
        if not process.alive(pid):
            paths.pid_file(comp.name).unlink(missing_ok=True)
            raise StackError(
                f"{comp.title} exited during start-up; its log {comp.log_file} ends with:\n"
                + process.log_tail(comp.name)
            )
        if time.monotonic() > deadline:
            process.terminate(comp.name, timeout=comp.stop_timeout)
            raise StackError(
                f"{comp.title} did not become ready within {comp.ready_timeout:.0f}s (stopped it again); "
                f"see its log {comp.log_file}:\n" + process.log_tail(comp.name)
            )
        time.sleep(0.2)


def _ensure_running(comp: Component, say: Say, requirements: dict[str, Future[str]]) -> str:
    """Start `comp` unless it already runs; returns what happened, for the `up` output.

    `requirements` are the start-ups of the components `comp` needs: they run in parallel with this
    one, which waits for them (they were submitted first) before it prepares.
    """
    for name, future in requirements.items():
        try:
            future.result()
        except StackError:
            raise StackError(f"not started: it needs {name}, which did not start") from None
    pid = process.running_pid(comp.name)
    if pid is not None:
        if comp.healthy():
            return f"already running (pid {pid})"
        _wait_ready(comp, pid)  # still starting (e.g. an interrupted `up`), or briefly busy
        return f"running (pid {pid}), now ready"
    # A grace period: a just-killed JVM keeps its sockets until its last thread is gone.
    for port, variable in _ports_still_open(comp, timeout=5.0):
        raise StackError(
            f"127.0.0.1:{port} is in use by a process devstack did not start "
            f"(state dir {paths.state_dir()}); stop it, or move the port with {variable}=..."
        )
    started = time.monotonic()
    comp.prepare(lambda message: say(f"{comp.name}: {message}"))
    prepared = time.monotonic()
    pid = process.spawn(comp.name, comp.command(), cwd=comp.cwd(), env=comp.env())
    _wait_ready(comp, pid)
    done = time.monotonic()
    extra = f" after {prepared - started:.1f}s of preparation" if prepared - started > 5 else ""
    return f"started (pid {pid}) in {done - prepared:.1f}s{extra}"


def up(names: Iterable[str] | None = None, *, say: Say = _stderr) -> dict[str, str]:
    """Start the named components (all by default) in parallel; returns the CACERT_* environment.

    Every component is attempted even if another fails; the failures are raised together at the end.
    """
    selected = [component(name) for name in with_requirements(resolve(names))]
    errors: list[str] = []
    with process.stack_lock(), ThreadPoolExecutor(max_workers=len(selected)) as pool:
        futures: dict[str, Future[str]] = {}
        for comp in selected:  # in start order, so what a component requires is submitted before it
            needs = {name: futures[name] for name in comp.requires}
            futures[comp.name] = pool.submit(_ensure_running, comp, say, needs)
        for comp in selected:
            try:
                outcome = futures[comp.name].result()
            except StackError as exc:
                errors.append(f"{comp.name}: {exc}")
                continue
            say(f"{comp.name:<8} {outcome:<40} {comp.address()}")
    if errors:
        raise StackError("\n".join(errors))
    return endpoints.current().env()


def start(name: str, *, say: Say = _stderr) -> None:
    """Start one component (no-op if it runs); for fault tests that stopped it with `stop`."""
    up([name], say=say)


def ensure_up(components: Iterable[str] = ("kafka", "mongo", "smtp", "dns-auth", "dns")) -> dict[str, str]:
    """Make sure the components run and answer; returns the CACERT_* environment pointing at them.

    Safe to call from every test session and from several processes at once (pytest-xdist).
    """
    return up(components, say=_stderr)


# -- stop -----------------------------------------------------------------------------------------


def _ports_still_open(comp: Component, timeout: float) -> list[tuple[int, str]]:
    """Ports of `comp` that still accept connections after waiting up to `timeout` for them to close."""
    deadline = time.monotonic() + timeout
    while True:
        busy = [(port, variable) for port, variable in comp.ports() if process.port_open(port)]
        if not busy or time.monotonic() > deadline:
            return busy
        time.sleep(0.1)


def _terminate(comp: Component, *, kill: bool = False) -> bool:
    """Stop `comp` and wait until its ports are closed, so an immediate `start` can bind them again."""
    stopped = process.terminate(comp.name, timeout=comp.stop_timeout, kill=kill)
    if stopped:
        _ports_still_open(comp, timeout=10.0)
    return stopped


def stop(name: str, *, kill: bool = False) -> bool:
    """Stop one component; `kill=True` sends SIGKILL at once to simulate a crash.

    Returns False if it was not running.
    """
    comp = component(name)
    with process.stack_lock():
        return _terminate(comp, kill=kill)


def down(names: Iterable[str] | None = None, *, wipe: bool = False, say: Say = _stderr) -> None:
    """Stop the named components (all by default); with `wipe`, delete their data too.

    Wiping everything deletes the whole state dir, including anything else kept there.
    """
    asked = [n for n in names or [] if n.strip()]
    selected = resolve(asked) if asked else list(COMPONENTS)  # all: an optional one may run too
    with process.stack_lock():
        for name in reversed(selected):
            comp = component(name)
            stopped = _terminate(comp)
            say(f"{name:<8} {'stopped' if stopped else 'not running'}")
            if wipe:
                for directory in comp.data_dirs():
                    shutil.rmtree(directory, ignore_errors=True)
                comp.log_file.unlink(missing_ok=True)
        if wipe and set(selected) == set(COMPONENTS):
            _wipe_state_dir()
            say(f"deleted {paths.state_dir()}")


def _wipe_state_dir() -> None:
    root = paths.state_dir()
    for entry in root.iterdir() if root.is_dir() else []:
        if entry == paths.run_dir():
            # Keep run/ itself: it holds the lock we are holding; only stale pid files go.
            for pid_file in entry.glob("*.pid"):
                pid_file.unlink(missing_ok=True)
        elif entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


# -- status ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    name: str
    pid: int | None
    healthy: bool
    address: str
    log_file: Path

    @property
    def state(self) -> str:
        if self.pid is None:
            return "stopped"
        return "running" if self.healthy else "unhealthy"


def status(names: Iterable[str] | None = None) -> list[Status]:
    """What runs and whether it answers, per component."""
    result = []
    for name in with_requirements(resolve(names)):
        comp = component(name)
        pid = process.running_pid(name)
        result.append(Status(name, pid, pid is not None and comp.healthy(), comp.address(), comp.log_file))
    return result
