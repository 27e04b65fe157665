"""What every piece of the local stack provides, so stack.py can start, probe and stop them alike."""

from __future__ import annotations

import abc
import os
from collections.abc import Callable
from pathlib import Path

from devstack import paths
from devstack.endpoints import Endpoints

Say = Callable[[str], None]
"""Progress reporter for slow one-time work (downloads, builds)."""


class Component(abc.ABC):
    """One server of the stack, run as a detached process with a pid file and a log file."""

    name: str
    """Short name used on the command line, in pid and log file names."""
    title: str
    """Human-readable name for messages."""
    ready_timeout: float = 60.0
    """How long start-up may take before we give up (and stop the process)."""
    stop_timeout: float = 20.0
    """How long a graceful SIGTERM shutdown may take before SIGKILL."""
    requires: tuple[str, ...] = ()
    """Components that must answer before this one is prepared (`up` starts them too)."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints

    @abc.abstractmethod
    def ports(self) -> list[tuple[int, str]]:
        """(port, environment variable that moves it) for every port this component binds."""

    @abc.abstractmethod
    def data_dirs(self) -> list[Path]:
        """Directories holding this component's data (deleted by `down --wipe`)."""

    @abc.abstractmethod
    def prepare(self, say: Say) -> None:
        """Make the next `command()` runnable: fetch, build, write config, format. Idempotent."""

    @abc.abstractmethod
    def command(self) -> list[str]:
        """argv of the server process."""

    @abc.abstractmethod
    def healthy(self) -> bool:
        """One quick probe: True only if the server answers its own protocol, not just TCP."""

    @abc.abstractmethod
    def address(self) -> str:
        """Where clients connect, for status output."""

    def env(self) -> dict[str, str] | None:
        """Environment of the server process (None: inherit ours)."""
        return None

    def cwd(self) -> Path:
        """Working directory of the server process (its data dir, so stray files land there)."""
        return self.data_dirs()[0]

    @property
    def log_file(self) -> Path:
        return paths.log_file(self.name)


def inherited_env(**extra: str) -> dict[str, str]:
    """Our environment plus `extra`, for components that need a variable or two on top."""
    env = dict(os.environ)
    env.update(extra)
    return env
