"""PostgreSQL from Debian's `postgresql` package, as the storage of FerretDB's PostgreSQL backend.

Selected with CACERT_STACK_MONGO_BACKEND=postgresql (devstack/ferretdb.py), the default for a new stack
(docs/decisions.md says why; SQLite needs no server). The cluster lives in the stack's state dir,
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
# FerretDB v1 looks a field up with JSONB containment, `(_jsonb -> 'field') @> '"value"'` (so that a value
# inside an array matches, as in MongoDB), but indexes the field, `_id` included, with a B-tree on
# `(_jsonb -> 'field')`, which `@>` cannot use: every lookup, by `_id` too, read the whole table (a
# find by `_id` took 4.9 ms in a collection of 20,000 documents against 0.6 ms in one of 100). So the
# cluster gets, beside every such B-tree, a GIN index on the same expression, which `@>` does use (and
# plans every statement for its values, `command()`, as the field is a parameter of FerretDB's SQL): at
# every CREATE INDEX (an event trigger; FerretDB makes the `_id` index as it creates a collection's
# table), and once for what exists already. `fastupdate` off: a pending list would be scanned, in full,
# by every lookup until a vacuum merged it. docs/decisions.md, "FerretDB's lookups use an index".
INDEX_COMPANIONS_SQL = r"""
CREATE OR REPLACE FUNCTION cacert_gin_companions(target regclass) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
  ix record;
  col int;
  expr text;
BEGIN
  FOR ix IN
    SELECT i.indexrelid, i.indrelid, i.indnkeyatts FROM pg_index i
      JOIN pg_class c ON c.oid = i.indexrelid
      JOIN pg_am am ON am.oid = c.relam
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE am.amname = 'btree' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
       AND (target IS NULL OR i.indexrelid = target)
  LOOP
    FOR col IN 1..ix.indnkeyatts LOOP
      expr := pg_get_indexdef(ix.indexrelid, col, false);
      IF expr ~ '^\(\(_jsonb -> ''[A-Za-z0-9_$-]+''::text\)\)$' THEN
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING gin (%s jsonb_path_ops) WITH (fastupdate = off)',
                       'cacert_gin_' || ix.indexrelid || '_' || col, ix.indrelid::regclass, expr);
      END IF;
    END LOOP;
  END LOOP;
END
$fn$;

CREATE OR REPLACE FUNCTION cacert_gin_on_create_index() RETURNS event_trigger LANGUAGE plpgsql AS $fn$
DECLARE
  created record;
BEGIN
  FOR created IN SELECT objid FROM pg_event_trigger_ddl_commands()
                  WHERE command_tag = 'CREATE INDEX' AND object_type = 'index' LOOP
    PERFORM cacert_gin_companions(created.objid::regclass);
  END LOOP;
END
$fn$;

DO $do$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'cacert_gin_companions') THEN
    CREATE EVENT TRIGGER cacert_gin_companions ON ddl_command_end WHEN TAG IN ('CREATE INDEX')
      EXECUTE FUNCTION cacert_gin_on_create_index();
  END IF;
END
$do$;

SELECT cacert_gin_companions(NULL);
"""


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

    def install_index_companions(self) -> None:
        """Make FerretDB's lookups use an index (INDEX_COMPANIONS_SQL); idempotent, run while the server runs."""
        result = subprocess.run(
            [self._bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", HOST, "-p", str(self.endpoints.postgres),
             "-U", ROLE, "-d", DATABASE, "-f", "-"],
            input=INDEX_COMPANIONS_SQL, capture_output=True, text=True, check=False, timeout=300,
        )  # fmt: skip
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
            raise StackError(f"could not add the GIN indexes FerretDB's lookups need to PostgreSQL:\n{tail}")

    def command(self) -> list[str]:
        return [
            *_as_server_user(), self._bin("postgres"), "-D", str(self.data),
            "-c", f"listen_addresses={HOST}", "-c", f"port={self.endpoints.postgres}",
            "-c", f"unix_socket_directories={self.data}",
            # FerretDB's pool (FERRETDB_POOL, devstack/ferretdb.py) and a few for psql and superusers.
            "-c", f"max_connections={FERRETDB_POOL + 20}",
            # FerretDB names the field as a parameter (`_jsonb->$1 @> $2`): a plan made for any field can use
            # no index, so every statement is planned for its own values (INDEX_COMPANIONS_SQL).
            "-c", "plan_cache_mode=force_custom_plan",
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
