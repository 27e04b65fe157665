"""Key custody in the running local system (issue 18): the roots' keys are kept apart from every service.

`./dev up` (here the session's `system`) creates the hierarchy with `init-ca`: the roots' keys go to the
root directory, which stands in for offline storage, and no service process is told where it is. This looks at
the real processes: their environment and the directories it names.
"""

from __future__ import annotations

from pathlib import Path

from devstack import system as devstack_system

ROOT_KEYS = {"class1.key.pem", "class3.key.pem"}


def _service_processes() -> dict[int, tuple[str, dict[str, str]]]:
    """pid -> (command line, environment) of every service process of this local system: a `python -m
    services.<name> ...` on the HTTP port devstack gave that service (other test sessions run their own)."""
    ports = {str(spec.port) for spec in devstack_system.SERVICES}
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if b"-m" not in argv or not any(a.startswith(b"services.") for a in argv):
                continue
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:  # ended meanwhile, or not ours to read
            continue
        env = dict(item.decode(errors="replace").split("=", 1) for item in environ if b"=" in item)
        if env.get("CACERT_HTTP_PORT") in ports:
            found[int(proc.name)] = (b" ".join(argv).decode(errors="replace"), env)
    return found


def test_no_service_can_reach_the_roots_keys(system: dict[str, str]) -> None:
    root_dir = devstack_system.root_dir()
    assert ROOT_KEYS <= {p.name for p in root_dir.iterdir()}, "init-ca wrote the roots' keys there"
    processes = _service_processes()
    issuing = [env for command, env in processes.values() if "services.signer issuing" in command]
    assert issuing, f"no issuing signer running among {[c for c, _ in processes.values()]}"
    for command, env in processes.values():
        named = {Path(value) for key, value in env.items() if key.startswith("CACERT_") and value.startswith("/")}
        assert root_dir not in named and not any(root_dir in p.parents for p in named), (command, named)
        ca_dir = env.get("CACERT_CA_DIR")
        if ca_dir:  # the signers: their CA directory holds the issuing CAs' keys and no root key
            held = {p.name for p in Path(ca_dir).iterdir()}
            assert not held & ROOT_KEYS, (command, sorted(held & ROOT_KEYS))
            assert {"class1-issuing.key.pem", "class3-issuing.key.pem"} <= held
