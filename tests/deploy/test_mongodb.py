"""MongoDB as a CA needs it (issue 20 item 2): a replica set that survives a member, TLS on every
connection, majority writes, and a nightly backup of every service's database."""

from __future__ import annotations

import base64
import re
from urllib.parse import parse_qsl, urlsplit

from tests.deploy.manifests import K8S, MONGODB_WORKLOADS, Obj, named, of_kind, secret_mounts

CREATE_USERS = (K8S / "base" / "mongodb-init" / "create-users.js").read_text()


def _flags(container: Obj) -> dict[str, str]:
    return dict(a.removeprefix("--").partition("=")[::2] for a in container["args"])


def test_prod_runs_a_three_member_replica_set_that_keeps_a_majority(rendered: dict[str, list[Obj]]) -> None:
    objects = rendered["prod"]
    mongodb = named(objects, "StatefulSet", "mongodb")
    assert mongodb["spec"]["replicas"] == 3
    (mongod,) = mongodb["spec"]["template"]["spec"]["containers"]
    flags = _flags(mongod)
    assert flags["replSet"] == "rs0" and "keyFile" in flags
    assert flags["wiredTigerCacheSizeGB"] == "1.5", "prod sizes the cache and keeps every other flag"
    (budget,) = [p for p in of_kind(objects, "PodDisruptionBudget") if p["metadata"]["name"] == "mongodb"]
    assert budget["spec"]["minAvailable"] == 2
    spread = {c["topologyKey"]: c["whenUnsatisfiable"]
              for c in mongodb["spec"]["template"]["spec"]["topologySpreadConstraints"]}
    assert spread == {"kubernetes.io/hostname": "DoNotSchedule", "topology.kubernetes.io/zone": "ScheduleAnyway"}
    job = named(objects, "Job", "mongodb-replica-set")
    members = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert members["MEMBERS"] == "3", "the Job initiates as many members as the StatefulSet runs"


def test_mongod_requires_tls_and_every_client_verifies_it(rendered: dict[str, list[Obj]]) -> None:
    for name, objects in rendered.items():
        (mongod,) = named(objects, "StatefulSet", "mongodb")["spec"]["template"]["spec"]["containers"]
        flags = _flags(mongod)
        assert flags["tlsMode"] == "requireTLS" and flags["tlsCAFile"] and flags["tlsCertificateKeyFile"], name
        secrets = {s["metadata"]["name"]: s for s in of_kind(objects, "Secret")}
        if name != "dev":
            continue
        for workload in sorted(MONGODB_WORKLOADS):
            template = named(objects, "Deployment", workload)["spec"]["template"]
            (container,) = template["spec"]["containers"]
            mounts = secret_mounts(template, container)
            assert mounts["/var/run/secrets/cacert/mongodb-ca"][0].startswith("mongodb-ca"), workload
            secret, _ = mounts["/var/run/secrets/cacert/mongodb"]
            query = dict(parse_qsl(urlsplit(base64.b64decode(secrets[secret]["data"]["url"]).decode()).query))
            assert query["tls"] == "true" and query["w"] == "majority" and query["replicaSet"] == "rs0", workload
            assert query["tlsCAFile"].startswith("/var/run/secrets/cacert/mongodb-ca/"), workload


def test_the_backup_dumps_every_service_database_as_a_read_only_user(rendered: dict[str, list[Obj]]) -> None:
    service_databases = {db for _, db, role in re.findall(r'\["(\w+)", "(\w+)", "(\w+)", "\w+"\]', CREATE_USERS)
                         if role in ("readWrite", "read")}
    assert ["backup", "admin", "backup"] in [list(u) for u in re.findall(
        r'\["(\w+)", "(\w+)", "(\w+)", "\w+"\]', CREATE_USERS)], "the backup user has the backup role only"
    for name, objects in rendered.items():
        cron = named(objects, "CronJob", "mongodb-backup")
        assert cron["spec"]["concurrencyPolicy"] == "Forbid"
        template = cron["spec"]["jobTemplate"]["spec"]["template"]
        (dump,) = template["spec"]["containers"]
        command = dump["command"]
        assert command[:4] == ["python", "-m", "shared.backup", "dump"], name
        dumped = {command[i + 1] for i, arg in enumerate(command) if arg == "--database"}
        assert dumped == service_databases, f"{name}: the backup must cover every service's database"
        assert command[command.index("--under") + 1] == "/backups"
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        mounted = {m["mountPath"]: volumes[m["name"]] for m in dump["volumeMounts"]}
        assert mounted["/backups"]["persistentVolumeClaim"]["claimName"] == "mongodb-backups"
        assert named(objects, "PersistentVolumeClaim", "mongodb-backups")
        secret_name = mounted["/var/run/secrets/cacert/mongodb"]["secret"]["secretName"]
        assert secret_name.startswith("mongodb-backup"), secret_name  # dev: generated, with a hash suffix
        if name == "dev":
            secret = next(s for s in of_kind(objects, "Secret") if s["metadata"]["name"] == secret_name)
            url = urlsplit(base64.b64decode(secret["data"]["url"]).decode())
            assert url.username == "backup" and dict(parse_qsl(url.query))["tls"] == "true"


def test_only_the_services_the_members_and_the_tooling_reach_mongodb(rendered: dict[str, list[Obj]]) -> None:
    for name, objects in rendered.items():
        policy = named(objects, "NetworkPolicy", "mongodb")
        (rule,) = policy["spec"]["ingress"]
        (peer,) = rule["from"]
        (expression,) = peer["podSelector"]["matchExpressions"]
        assert set(expression["values"]) == MONGODB_WORKLOADS | {"mongodb", "mongodb-replica-set",
                                                                 "mongodb-backup"}, name
        (egress,) = policy["spec"]["egress"]
        assert egress["to"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "mongodb"}}}]
