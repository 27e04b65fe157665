"""The Kafka 4.1.1 broker: one KRaft node that is both broker and controller, run straight from jars.

There is no Docker and no Kafka distribution on the machine, only a JDK and Maven, so the broker's
jars come from Maven Central (`kafka-pom.xml`, fetched once into the cache) and the JVM is started
with the same main classes the distribution's shell scripts use (`kafka.tools.StorageTool` to
format the log directory, `kafka.Kafka` to run).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import struct
import subprocess
import uuid
from pathlib import Path

from devstack import paths, tools
from devstack.component import Component, Say, inherited_env
from devstack.endpoints import HOST
from devstack.errors import StackError

KAFKA_VERSION = "4.1.1"
POM = paths.PACKAGE_DIR / "kafka-pom.xml"
LOG4J2_CONFIG = paths.PACKAGE_DIR / "kafka-log4j2.xml"
# Small heap and G1: a development broker on a 2-core machine next to the services and the tests.
JVM_OPTS = [
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
]
NODE_ID = 1


class KafkaBroker(Component):
    name = "kafka"
    title = f"Kafka {KAFKA_VERSION} broker"
    ready_timeout = 120.0
    stop_timeout = 45.0  # controlled shutdown flushes and closes every partition

    def ports(self) -> list[tuple[int, str]]:
        return [
            (self.endpoints.kafka, "CACERT_STACK_KAFKA_PORT"),
            (self.endpoints.kafka_controller, "CACERT_STACK_KAFKA_CONTROLLER_PORT"),
        ]

    def address(self) -> str:
        return self.endpoints.kafka_bootstrap

    @property
    def home(self) -> Path:
        return paths.cache_dir() / f"kafka-{KAFKA_VERSION}"

    @property
    def libs(self) -> Path:
        return self.home / "libs"

    @property
    def data(self) -> Path:
        return paths.state_dir() / "kafka"

    @property
    def properties(self) -> Path:
        return self.data / "server.properties"

    def data_dirs(self) -> list[Path]:
        return [self.data]

    def prepare(self, say: Say) -> None:
        tools.find("java")  # fail before a one-minute download, not after it
        self._fetch_libs(say)
        self.data.mkdir(parents=True, exist_ok=True)
        self._write_properties()
        self._format()

    def command(self) -> list[str]:
        return [
            tools.find("java"),
            *JVM_OPTS,
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
            "-cp",
            f"{self.libs}/*",
            "kafka.Kafka",
            str(self.properties),
        ]

    def healthy(self) -> bool:
        try:
            brokers = metadata_brokers(HOST, self.endpoints.kafka)
        except OSError:
            return False
        return NODE_ID in brokers

    # -- one-time and per-start preparation -------------------------------------------------------

    def _fetch_libs(self, say: Say) -> None:
        """Copy kafka_2.13 and its runtime dependencies into the cache, unless already complete.

        A marker holding the pom's hash is written last, so an interrupted download (or a changed
        pom) is redone instead of leaving a half-filled libs dir that fails at class loading.
        """
        marker = self.home / "libs.complete"
        want = hashlib.sha256(POM.read_bytes()).hexdigest()
        if self.libs.is_dir() and marker.is_file() and marker.read_text().strip() == want:
            return
        mvn = tools.find("mvn")
        say(f"fetching Kafka {KAFKA_VERSION} jars from Maven Central into {self.libs} (first run only)")
        self.home.mkdir(parents=True, exist_ok=True)
        marker.unlink(missing_ok=True)
        # Run Maven on a copy in the cache, so it never writes target/ into the source tree.
        pom = self.home / "pom.xml"
        shutil.copyfile(POM, pom)
        partial = self.home / "libs.partial"
        shutil.rmtree(partial, ignore_errors=True)
        fetch_log = paths.logs_dir() / "kafka-fetch.log"
        fetch_log.parent.mkdir(parents=True, exist_ok=True)
        argv = [
            mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
            f"-DoutputDirectory={partial}", "-DincludeScope=runtime",
        ]  # fmt: skip
        # mvn is a shell script that needs a JVM too: give it the one we found.
        java_home = str(Path(os.path.realpath(tools.find("java"))).parent.parent)
        env = inherited_env(JAVA_HOME=os.environ.get("JAVA_HOME") or java_home)
        with fetch_log.open("wb") as log:
            rc = subprocess.run(argv, cwd=self.home, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, check=False).returncode  # fmt: skip
        if rc != 0 or not (partial / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file():
            tail = "\n".join(fetch_log.read_text(errors="replace").splitlines()[-15:])
            raise StackError(f"Maven could not fetch the Kafka jars (exit {rc}); see {fetch_log}:\n{tail}")
        shutil.rmtree(self.libs, ignore_errors=True)
        partial.rename(self.libs)
        marker.write_text(want + "\n")

    def _write_properties(self) -> None:
        """Regenerated on every start, so a changed port takes effect without a wipe."""
        port, controller = self.endpoints.kafka, self.endpoints.kafka_controller
        settings = {
            "process.roles": "broker,controller",
            "node.id": str(NODE_ID),
            # A static one-voter quorum: simplest KRaft setup, formatted without --standalone.
            "controller.quorum.voters": f"{NODE_ID}@{HOST}:{controller}",
            "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data / "logs"),
            # One node: every internal topic has one replica and needs one in-sync replica.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # Tests join consumer groups constantly; the default 3 s delay would slow every one.
            "group.initial.rebalance.delay.ms": "0",
            # After a crash (fault tests kill -9 the broker) the restarted broker may only register
            # once the old registration's session has expired: 4 s instead of the default 9 s.
            "broker.session.timeout.ms": "4000",
            "broker.heartbeat.interval.ms": "1000",
            "num.partitions": "4",
            "auto.create.topics.enable": "true",
        }
        text = "# Written by devstack/kafka.py on every start; edits are overwritten.\n"
        text += "".join(f"{key}={value}\n" for key, value in settings.items())
        self.properties.write_text(text)

    def _format(self) -> None:
        """Format the log dir once (KRaft refuses to start on an unformatted directory)."""
        if (self.data / "logs" / "meta.properties").is_file():
            return
        argv = [
            tools.find("java"), "-Xmx256m", f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
            "-cp", f"{self.libs}/*", "kafka.tools.StorageTool", "format", "--cluster-id", random_cluster_id(),
            "--config", str(self.properties),
        ]  # fmt: skip
        result = subprocess.run(argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise StackError(f"formatting the Kafka log dir failed:\n{result.stdout}{result.stderr}".rstrip())


def random_cluster_id() -> str:
    """A cluster id as `kafka-storage.sh random-uuid` makes it: URL-safe base64 of a UUID, no padding.

    Done here rather than by a second JVM start, which costs two seconds.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):  # Kafka rejects ids that look like command-line flags
            return text


def metadata_brokers(host: str, port: int, timeout: float = 2.0) -> list[int]:
    """Node ids of the brokers a Metadata request (v4, no topics) reports.

    A KRaft broker lists only unfenced brokers, i.e. itself once it has caught up with the
    controller and can serve clients, which is the readiness we want. Hand-written so the probe
    is synchronous and cheap (no client library, no event loop: fault tests call it from async code).
    Raises OSError when the broker is unreachable or answers something unexpected.
    """
    client_id = b"devstack"
    correlation_id = 0x0D5
    body = struct.pack(">hhih", 3, 4, correlation_id, len(client_id)) + client_id
    body += struct.pack(">ib", 0, 0)  # topics: empty array (not null = all); no auto-creation
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(body)) + body)
        (size,) = struct.unpack(">i", _recv_exactly(sock, 4))
        payload = _recv_exactly(sock, size)
    try:
        reply_id, _throttle, count = struct.unpack_from(">iii", payload, 0)
        if reply_id != correlation_id:
            raise OSError("Kafka metadata probe: mismatched correlation id")
        offset, nodes = 12, []
        for _ in range(count):
            (node_id,) = struct.unpack_from(">i", payload, offset)
            (host_len,) = struct.unpack_from(">h", payload, offset + 4)
            offset += 6 + host_len + 4  # node_id, host, port
            (rack_len,) = struct.unpack_from(">h", payload, offset)
            offset += 2 + max(rack_len, 0)
            nodes.append(node_id)
    except struct.error as exc:
        raise OSError(f"Kafka metadata probe: malformed response ({exc})") from exc
    return nodes


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise OSError("Kafka metadata probe: connection closed")
        data += chunk
    return data
