"""Detached processes tracked by pid files: spawn, find, stop; plus a cross-process lock.

Components run in their own session (`start_new_session`) so they outlive the `up` command and
are not hit by the Ctrl-C of the terminal that started them. A pid file records the pid together
with the process start time from /proc, so a pid that the kernel has since reused for some other
program is recognised as stale instead of being "stopped".
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from devstack import paths
from devstack.endpoints import HOST


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of `pid`, or None without /proc or process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; everything after the last ")" is fixed.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def _reap(pid: int) -> None:
    """Collect `pid` if it is our own exited child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def alive(pid: int, start_ticks: int | None = None) -> bool:
    """True if `pid` runs (not a zombie) and, when given, started at `start_ticks`."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    stat = _proc_stat(pid)
    if stat is None:
        return not Path("/proc/self").exists()  # no /proc (macOS): trust kill(0)
    state, ticks = stat
    if state in ("Z", "X"):
        return False
    return start_ticks is None or ticks == start_ticks


def running_pid(name: str) -> int | None:
    """Pid of component `name` if it runs; a stale or unreadable pid file is removed."""
    pid_path = paths.pid_file(name)
    try:
        record = json.loads(pid_path.read_text())
        pid, ticks = int(record["pid"]), record.get("start_ticks")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        pid_path.unlink(missing_ok=True)
        return None
    if alive(pid, ticks):
        return pid
    pid_path.unlink(missing_ok=True)
    return None


def spawn(name: str, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None) -> int:
    """Start `argv` detached, output appended to the component's log, and record its pid file."""
    log_path = paths.log_file(name)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    paths.run_dir().mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        log.write(f"\n--- devstack: starting {name} at {stamp}\n--- $ {shlex.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    stat = _proc_stat(proc.pid)
    record = {"pid": proc.pid, "start_ticks": stat[1] if stat else None, "argv": list(argv)}
    tmp = paths.pid_file(name).with_suffix(".pid.tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(paths.pid_file(name))
    return proc.pid


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)  # the whole session: also any helper the component forked
        else:
            os.kill(pid, sig)


def terminate(name: str, *, timeout: float = 30.0, kill: bool = False) -> bool:
    """Stop component `name`: SIGTERM (or SIGKILL with `kill`), SIGKILL after `timeout`.

    Returns False when it was not running. `kill=True` is for fault tests that simulate a crash.
    """
    pid = running_pid(name)
    if pid is None:
        return False
    _signal_group(pid, signal.SIGKILL if kill else signal.SIGTERM)
    if not wait_for_exit(pid, timeout):
        _signal_group(pid, signal.SIGKILL)
        wait_for_exit(pid, 10.0)
    paths.pid_file(name).unlink(missing_ok=True)
    return True


def wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def log_tail(name: str, lines: int = 25) -> str:
    """Last lines of a component's log, for error messages."""
    try:
        with paths.log_file(name).open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


_lock_guard = threading.RLock()
_lock_depth = 0
_lock_file: int | None = None


@contextlib.contextmanager
def stack_lock() -> Iterator[None]:
    """Serialise up/down/start/stop across processes (e.g. pytest-xdist workers calling ensure_up).

    Re-entrant within one process, so `ensure_up` can call `start` without deadlocking.
    """
    global _lock_depth, _lock_file
    with _lock_guard:
        if _lock_depth == 0:
            paths.run_dir().mkdir(parents=True, exist_ok=True)
            fd = os.open(paths.run_dir() / "stack.lock", os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            _lock_file = fd
        _lock_depth += 1
        try:
            yield
        finally:
            _lock_depth -= 1
            if _lock_depth == 0 and _lock_file is not None:
                fcntl.flock(_lock_file, fcntl.LOCK_UN)
                os.close(_lock_file)
                _lock_file = None


def stop_processes(procs: Sequence[subprocess.Popen[bytes]], timeout: float = 30) -> None:
    """SIGTERM every child still running (each finishes what it has in hand), then wait for all;
    kill what is still there after `timeout` seconds."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
