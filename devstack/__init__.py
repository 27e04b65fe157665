"""The project's local infrastructure as plain loopback processes: no Docker engine needed.

* Kafka 4.1.1 (KRaft, one combined broker + controller) from Maven Central jars, on 127.0.0.1:19092
* FerretDB v1.24.2 (SQLite backend, MongoDB wire protocol) built with Go, on 127.0.0.1:27018
* an SMTP server storing mail in a Maildir, with a JSON API to read it, on 127.0.0.1:2525 / :8025
* DNS (devstack/dns_server.py): Knot authoritative on 127.0.0.1:5300 (`dns-auth`, RFC 2136 updates with
  TSIG) and Unbound validating on 127.0.0.1:5353 (`dns`), from Debian packages installed when missing

Command line: `python -m devstack up|down|status|env|logs` (see devstack/__main__.py);
`python -m devstack up --system` (what `./dev up` runs) also creates the CA and the support accounts
on first run and starts the service processes (devstack/system.py).
From Python (pytest fixtures, fault tests):

    env = devstack.ensure_up()          # {"CACERT_KAFKA_BOOTSTRAP": "127.0.0.1:19092", "CACERT_DNS_RESOLVER": ...}
    devstack.stop("kafka")              # or stop("kafka", kill=True) to simulate a crash
    devstack.start("kafka")             # returns once the broker answers again

Downloads and builds are cached in ~/.cache/cacert-stack (CACERT_STACK_CACHE), state lives in
~/.local/state/cacert-stack (CACERT_STACK_STATE), ports move with CACERT_STACK_*_PORT.
"""

from devstack.endpoints import current as _current_endpoints
from devstack.errors import StackError
from devstack.stack import down, ensure_up, start, status, stop, up


def env() -> dict[str, str]:
    """The CACERT_* variables for the configured ports (whether or not the stack runs)."""
    return _current_endpoints().env()


__all__ = ["StackError", "down", "ensure_up", "env", "start", "status", "stop", "up"]
