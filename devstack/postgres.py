"""PostgreSQL from Debian's `postgresql` package, as the storage of FerretDB's PostgreSQL backend.

Selected with CACERT_STACK_MONGO_BACKEND=postgresql (devstack/ferretdb.py); the default backend is
SQLite and needs no server (docs/decisions.md says why). The cluster lives in the stack's state dir,
listens on loopback only (CACERT_STACK_POSTGRES_PORT, default 15432) with its socket in its own data
dir, and trusts connections from there, like every other server of this stack (nothing here has
authentication and none of it may be reachable from the network). PostgreSQL refuses to run as root,
so when the stack runs as root the cluster belongs to, and runs as, the package's `postgres` user, and
lives where that user can reach it (a root home is closed to others): under the package's
/var/lib/postgresql, in a directory named after the stack's state dir, which `down --wipe` removes.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from devstack import debian, paths, process
from devstack.component import Component, Say, inherited_env
from devstack.endpoints import HOST
from devstack.errors import StackError

PACKAGE = "postgresql"
SYSTEM_UNITS = ("postgresql.service",)
DATABASE = "postgres"  # FerretDB keeps each MongoDB database as a schema of this one
ROLE = "ferretdb"
# FerretDB v1 holds one PostgreSQL connection for an update's read while it takes a second for the write
# (internal/handler/msg_update.go): with its default pool of 50, fifty updates at once each hold one and
# wait for another, for ever (the chaos probe stalled it so). The pool is larger than every client pool of
# the local system together (CACERT_MONGO_MAX_POOL_SIZE, 25 a process), so some update always gets both.
FERRETDB_POOL = 300
SERVER_HOME = Path("/var/lib/postgresql")


def bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian keeps each major version apart)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def _as_server_user() -> list[str]:
    """argv prefix that runs a program as the cluster's owner (root: the `postgres` user; else: us)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise StackError("running PostgreSQL as root is refused by PostgreSQL, and `setpriv` (util-linux) "
                         "to drop to the `postgres` user is missing")
    return [setpriv, "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]


class PostgreSQL(Component):
    name = "postgres"
    title = "PostgreSQL (FerretDB's backend)"
    ready_timeout = 60.0

    def ports(self) -> list[tuple[int, str]]:
        return [(self.endpoints.postgres, "CACERT_STACK_POSTGRES_PORT")]

    def address(self) -> str:
        return self.url

    @property
    def url(self) -> str:
        return f"postgres://{ROLE}@{HOST}:{self.endpoints.postgres}/{DATABASE}?pool_max_conns={FERRETDB_POOL}"

    @property
    def data(self) -> Path:
        if os.geteuid() != 0:
            return paths.state_dir() / "postgres"
        stack_id = hashlib.sha256(str(paths.state_dir()).encode()).hexdigest()[:12]
        return SERVER_HOME / f"cacert-stack-{stack_id}"

    def data_dirs(self) -> list[Path]:
        return [self.data]

    def _bin(self, program: str) -> str:
        directory = bin_dir()
        if directory is None:
            raise StackError(f"PostgreSQL is not installed: `apt-get install {PACKAGE}`")
        return str(directory / program)

    def prepare(self, say: Say) -> None:
        if bin_dir() is None:
            debian.install([PACKAGE], purpose="FerretDB's PostgreSQL backend", units=SYSTEM_UNITS, say=say)
            if bin_dir() is None:
                raise StackError(f"apt-get installed {PACKAGE} but no /usr/lib/postgresql/*/bin/postgres exists")
        if (self.data / "PG_VERSION").exists():
            return
        self.data.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.data, owner.pw_uid, owner.pw_gid)
        self.data.chmod(0o700)
        say(f"creating a PostgreSQL cluster in {self.data} (first run only)")
        result = subprocess.run(
            [*_as_server_user(), self._bin("initdb"), "-D", str(self.data), "-U", ROLE, "--auth=trust",
             "--encoding=UTF8", "--locale=C", "--no-instructions"],
            capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL, timeout=300,
        )  # fmt: skip
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
            raise StackError(f"initdb failed in {self.data}:\n{tail}")

    def command(self) -> list[str]:
        return [
            *_as_server_user(), self._bin("postgres"), "-D", str(self.data),
            "-c", f"listen_addresses={HOST}", "-c", f"port={self.endpoints.postgres}",
            "-c", f"unix_socket_directories={self.data}",
            # FerretDB's pool (FERRETDB_POOL, devstack/ferretdb.py) and a few for psql and superusers.
            "-c", f"max_connections={FERRETDB_POOL + 20}",
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        return inherited_env(LC_ALL="C")

    def healthy(self) -> bool:
        if not process.port_open(self.endpoints.postgres):
            return False
        try:
            result = subprocess.run(
                [self._bin("pg_isready"), "-q", "-h", HOST, "-p", str(self.endpoints.postgres), "-U", ROLE,
                 "-d", DATABASE], capture_output=True, check=False, stdin=subprocess.DEVNULL, timeout=10,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired, StackError):
            return False
        return result.returncode == 0
