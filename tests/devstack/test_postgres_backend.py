"""FerretDB's storage backend: SQLite by default, PostgreSQL (a server of its own) when chosen."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from devstack import endpoints, ferretdb, postgres, stack
from devstack.errors import StackError


def test_a_new_stack_runs_on_postgresql_and_keeps_the_backend_it_was_created_with(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CACERT_STACK_STATE", str(tmp_path))
    monkeypatch.delenv("CACERT_STACK_MONGO_BACKEND", raising=False)
    assert ferretdb.FerretDB(endpoints.current()).backend == "postgresql"
    assert stack.with_requirements(stack.resolve(["mongo"])) == ["postgres", "mongo"]
    (tmp_path / "ferretdb-backend").write_text("sqlite\n")  # what `up` records when the data is created
    assert ferretdb.FerretDB(endpoints.current()).backend == "sqlite"


def test_a_state_dir_from_before_the_choice_stays_on_sqlite_and_needs_no_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CACERT_STACK_STATE", str(tmp_path))
    monkeypatch.delenv("CACERT_STACK_MONGO_BACKEND", raising=False)
    (tmp_path / "ferretdb").mkdir()
    (tmp_path / "ferretdb" / "registration.sqlite").write_bytes(b"")
    db = ferretdb.FerretDB(endpoints.current())
    assert db.backend == "sqlite" and db.requires == ()
    assert "--handler=sqlite" in db.command()
    assert "postgres" not in stack.with_requirements(stack.resolve(None))


def test_the_postgresql_backend_brings_its_server_along(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CACERT_STACK_MONGO_BACKEND", "PostgreSQL")
    monkeypatch.setenv("CACERT_STACK_POSTGRES_PORT", "15999")
    db = ferretdb.FerretDB(endpoints.current())
    assert db.backend == "postgresql" and "PostgreSQL" in db.title
    assert "--handler=postgresql" in db.command()
    pool = f"pool_max_conns={postgres.FERRETDB_POOL}"
    assert f"--postgresql-url=postgres://ferretdb@127.0.0.1:15999/postgres?{pool}" in db.command()
    assert stack.with_requirements(stack.resolve(["mongo"])) == ["postgres", "mongo"]
    everything = stack.with_requirements(stack.resolve(None))  # `up` with no names
    assert everything.index("postgres") < everything.index("mongo")  # started first


def test_an_unknown_backend_stops_with_a_line_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CACERT_STACK_MONGO_BACKEND", "mysql")
    with pytest.raises(StackError, match="CACERT_STACK_MONGO_BACKEND must be one of postgresql, sqlite"):
        ferretdb.FerretDB(endpoints.current())


@pytest.mark.skipif(postgres.bin_dir() is None, reason="needs Debian's postgresql (`apt-get install postgresql`)")
def test_a_second_stack_on_postgresql_serves_mongodb_commands_and_looks_documents_up_by_index(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real FerretDB on a real PostgreSQL, in a stack of its own (own state dir and ports). Lookups by
    `_id` and by an indexed field use an index, not a read of the whole table (devstack/postgres.py,
    INDEX_COMPANIONS_SQL): PostgreSQL's own counters say so."""
    for name, value in {"CACERT_STACK_STATE": str(tmp_path / "state"), "CACERT_STACK_MONGO_BACKEND": "postgresql",
                        "CACERT_STACK_MONGO_PORT": str(_free_port()),
                        "CACERT_STACK_POSTGRES_PORT": str(_free_port())}.items():
        monkeypatch.setenv(name, value)
    data = postgres.PostgreSQL(endpoints.current()).data
    try:
        started = subprocess.run([sys.executable, "-m", "devstack", "up", "--only", "mongo"], capture_output=True,
                                 text=True, timeout=300, check=False)
        assert started.returncode == 0, started.stderr
        assert "postgres" in started.stderr and "mongo" in started.stderr
        client: MongoClient[dict[str, Any]] = MongoClient(endpoints.current().mongo_url, serverSelectionTimeoutMS=10000)
        try:
            client.probe.docs.insert_one({"_id": "x", "n": 1})
            client.probe.docs.update_one({"_id": "x"}, {"$inc": {"n": 1}})
            assert (client.probe.docs.find_one({"_id": "x"}) or {}).get("n") == 2
            client.probe.docs.create_index([("member_id", 1)], name="by_member")
            client.probe.docs.insert_many([{"_id": f"d{i}", "member_id": f"m{i % 50}"} for i in range(2000)])
            _psql("ANALYZE")  # as autovacuum soon would: with real statistics PostgreSQL prefers one plan for
            # every value of a statement's parameters, which (the field being one) can use no index
            before = _probe_scans()
            for i in range(0, 2000, 10):
                assert (client.probe.docs.find_one({"_id": f"d{i}"}) or {}).get("member_id") == f"m{i % 50}"
                assert client.probe.docs.update_one({"_id": f"d{i}"}, {"$set": {"seen": True}}).modified_count == 1
            for m in range(20):
                assert len(list(client.probe.docs.find({"member_id": f"m{m}"}))) == 40
            after = _probe_scans(until=lambda scans: scans[1] >= before[1] + 420)
            # 420 lookups: with no usable index each would be a sequential scan. The few allowed are the
            # planner's own choice for the tiny table before the bulk insert (counters arrive late).
            assert after[1] >= before[1] + 420 and after[0] - before[0] < 20, f"(seq, index) {before} -> {after}"
            # ... and every statement is planned for its values: a plan made for any field could use no index
            assert _psql("SHOW plan_cache_mode").strip() == "force_custom_plan"
        finally:
            client.close()
    finally:
        subprocess.run([sys.executable, "-m", "devstack", "down", "--wipe"], capture_output=True, timeout=120,
                       check=False)
    assert not data.exists()  # --wipe removed the cluster too


def _psql(sql: str) -> str:
    result = subprocess.run(
        [postgres.PostgreSQL(endpoints.current())._bin("psql"), "-X", "-A", "-t", "-F", " ", "-h", "127.0.0.1",
         "-p", str(endpoints.current().postgres), "-U", postgres.ROLE, "-d", postgres.DATABASE, "-c", sql],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return result.stdout


def _probe_scans(until: Any = None) -> tuple[int, int]:
    """(sequential scans, index scans) PostgreSQL counted on the table of FerretDB's `probe.docs`; with `until`,
    waits up to 10 s for the counters (flushed about once a second) to satisfy it."""
    deadline = time.monotonic() + 10
    while True:
        seq, idx = (int(n) for n in _psql(
            "SELECT coalesce(sum(seq_scan), 0), coalesce(sum(idx_scan), 0) FROM pg_stat_user_tables "
            "WHERE schemaname = 'probe' AND relname LIKE 'docs\\_%'").split())
        if until is None or until((seq, idx)) or time.monotonic() > deadline:
            return seq, idx
        time.sleep(0.5)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_ferretdb_pool_outnumbers_every_local_process_pool_so_concurrent_updates_cannot_stall_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FerretDB v1 holds one PostgreSQL connection for an update's read and takes a second for its write: with
    its default pool of 50, fifty updates at once stalled it for good (issue 23's probe). Its pool is set
    above what every process of `./dev up` may ask at once, and PostgreSQL accepts that many."""
    from devstack.system import SERVICES
    from shared.config import MongoSettings

    monkeypatch.setenv("CACERT_STACK_STATE", str(tmp_path))
    monkeypatch.delenv("CACERT_STACK_MONGO_BACKEND", raising=False)
    command = ferretdb.FerretDB(endpoints.current()).command()
    assert f"--postgresql-url={postgres.PostgreSQL(endpoints.current()).url}" in command
    assert postgres.PostgreSQL(endpoints.current()).url.endswith(f"?pool_max_conns={postgres.FERRETDB_POOL}")
    local_clients = (len(SERVICES) + 2) * MongoSettings(url="unused").max_pool_size  # + demo, CLI
    assert postgres.FERRETDB_POOL > local_clients
    server = postgres.PostgreSQL(endpoints.current()).command()
    assert f"max_connections={postgres.FERRETDB_POOL + 20}" in server
