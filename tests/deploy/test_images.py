"""The Dockerfiles (one per service) install from requirements.lock into a slim, unprivileged runtime
stage, and the entry point each Deployment runs really starts: checked without a Docker engine by
parsing the Dockerfiles and running the same `python -m ...` command here."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.manifests import (
    DOCKER,
    REPO,
    SERVICE_WORKLOADS,
    Obj,
    container_environment,
    containers,
    named,
    of_kind,
    pod_templates,
)

IMAGES = {
    "registration": "registration",
    "domain-verify": "domain_verify",
    "signer": "signer",
    "notifier": "notifier",
    "acme": "acme",
}

# Images of opt-in components, not of a service: image -> the module its entry point runs.
TOOL_IMAGES = {"signer-loadtest": "benchmarks.signer_loadtest"}


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def parse_dockerfile(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """(ARG defaults before the first FROM, stages) with continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), parts[0])
            stages.append(Stage(base, parts[2] if len(parts) > 2 and parts[1].upper() == "AS" else None))
        elif not stages:
            if keyword == "ARG" and "=" in rest:
                key, value = rest.split("=", 1)
                args[key] = value
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


def _exec_form(arg: str) -> list[str]:
    value = json.loads(arg)
    assert isinstance(value, list), f"use the exec form, not a shell string: {arg}"
    return value


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_dockerfile_is_multi_stage_slim_locked_and_unprivileged(image: str) -> None:
    path = DOCKER / f"{image}.Dockerfile"
    _, stages = parse_dockerfile(path)
    assert len(stages) >= 2, "multi-stage: build tools stay in the build stage"
    build, final = stages[:-1], stages[-1]
    for stage in stages:
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?(@sha256:[0-9a-f]{64})?", stage.base), (
            stage.base
        )
    installs = [run for stage in build for run in stage.all("RUN") if "pip install" in run]
    assert any(
        re.search(r"pip install --require-hashes -r requirements-runtime\.lock .*pip install --no-deps \.(\s|$)", run)
        for run in installs
    ), "the dependencies are installed from the hashed runtime lock, then the project without resolving again"
    copied = " ".join(arg for stage in build for arg in stage.all("COPY"))
    assert "requirements-runtime.lock" in copied and "pyproject.toml" in copied
    # the runtime stage only receives the built environment: no compilers, no package installs
    for run in final.all("RUN"):
        assert not re.search(r"apt-get install|apk add|pip install|gcc|build-essential", run), run
    assert any(arg.startswith("--from=") for arg in final.all("COPY"))
    (user,) = final.all("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric non-root USER lets runAsNonRoot verify it"
    package = IMAGES[image]
    (entrypoint,) = final.all("ENTRYPOINT")
    assert _exec_form(entrypoint) == ["python", "-m", f"services.{package}"]


def _image_of(container: Obj) -> str:
    return container["image"].rsplit("/", 1)[-1].split(":")[0].split("@")[0]


def test_every_deployed_service_image_has_a_dockerfile(rendered: dict[str, list[Obj]]) -> None:
    for workload in SERVICE_WORKLOADS:
        (container,) = named(rendered["prod"], "Deployment", workload)["spec"]["template"]["spec"][
            "containers"
        ]
        image = _image_of(container)
        _, stages = parse_dockerfile(DOCKER / f"{image}.Dockerfile")
        exposed = {int(p) for arg in stages[-1].all("EXPOSE") for p in arg.split()}
        if not container.get("args"):  # runs the image's default: it must listen where the manifest probes
            assert exposed == {container["ports"][0]["containerPort"]}


def _locked(filename: str) -> dict[str, tuple[str, list[str]]]:
    """normalised name -> (version, sha256 hashes) of a hashed lock file."""
    pins: dict[str, tuple[str, list[str]]] = {}
    current = ""
    for line in (REPO / filename).read_text().splitlines():
        line = line.split("#")[0].strip().rstrip("\\").strip()
        if not line:
            continue
        if line.startswith("--hash=sha256:"):
            assert current, f"{filename}: a hash before any pin"
            pins[current][1].append(line.removeprefix("--hash=sha256:"))
            continue
        name, _, version = line.partition("==")
        assert version and " " not in version, f"{filename}: {line!r} is not an exact pin"
        current = re.sub(r"[-_.]+", "-", name).lower()
        pins[current] = (version, [])
    return pins


def test_every_pin_of_both_locks_carries_sha256_hashes() -> None:
    """`pip install --require-hashes` refuses any file the lock does not name (./dev, CI, the images)."""
    for filename in ("requirements.lock", "requirements-runtime.lock"):
        pins = _locked(filename)
        assert pins, filename
        for name, (_, hashes) in pins.items():
            assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), f"{filename}: {name}"


def test_the_runtime_lock_pins_every_runtime_dependency_at_the_versions_the_tests_use() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime, everything = _locked("requirements-runtime.lock"), _locked("requirements.lock")
    for requirement in project["dependencies"]:
        name = re.sub(r"[-_.]+", "-", re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]).lower()
        assert name in runtime, f"{name} is not pinned in requirements-runtime.lock"
    for name, (version, hashes) in runtime.items():
        assert everything.get(name, ("", []))[0] == version, f"{name}: the two locks disagree"
        assert set(hashes) == set(everything[name][1]), f"{name}: the two locks list other files"


def test_installed_package_carries_every_data_file_the_services_read() -> None:
    """The images run the installed package, not the source tree: every non-Python file under shared/
    and services/ must be matched by [tool.setuptools.package-data] or it is missing in the image."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = config.get("package-data", {}).get("*", [])
    missing = [
        str(p.relative_to(REPO))
        for root in ("shared", "services")
        for p in (REPO / root).rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and p.suffix not in (".py", ".pyc", ".md")
        and not any(fnmatch.fnmatch(p.name, pattern) for pattern in patterns)
    ]
    assert not missing, f"not installed by `pip install .` (add their pattern to package-data): {missing}"


def test_dockerignore_keeps_what_the_build_copies() -> None:
    rules = [
        r.strip()
        for r in (REPO / ".dockerignore").read_text().splitlines()
        if r.strip() and not r.startswith("#")
    ]
    for needed in ("pyproject.toml", "requirements-runtime.lock", "shared/", "services/"):
        assert f"!{needed}" in rules


# --- entry points ---------------------------------------------------------------------------------


def _command(container: Obj) -> list[str]:
    _, stages = parse_dockerfile(DOCKER / f"{_image_of(container)}.Dockerfile")
    final = stages[-1]
    (entrypoint,) = final.all("ENTRYPOINT")
    cmd = final.all("CMD")
    args = container.get("args") or (_exec_form(cmd[0]) if cmd else [])
    return container.get("command") or _exec_form(entrypoint) + args


def _require_module(argv: list[str]) -> None:
    module = argv[argv.index("-m") + 1]
    spec = importlib.util.find_spec(module)
    # `python -m package` runs package.__main__: a package that has none yet has no entry point yet
    if spec is None or (spec.submodule_search_locations is not None
                        and importlib.util.find_spec(f"{module}.__main__") is None):
        pytest.skip(f"{module} has no entry point yet")


def _run(argv: list[str], environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert argv[0] == "python"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONPATH": str(REPO),
        "PYTHONDONTWRITEBYTECODE": "1",
        **environ,
    }
    return subprocess.run(
        [sys.executable, *argv[1:]], cwd="/", env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("workload", sorted(SERVICE_WORKLOADS))
def test_entry_point_starts_and_rejects_missing_secrets(
    rendered: dict[str, list[Obj]], workload: str
) -> None:
    """Run exactly what the pod runs (ENTRYPOINT + args) with the pod's ConfigMap environment but
    without its Secret files: it must import, read its configuration and stop with exit code 2 and one
    line naming the unreadable variable, as a pod with a missing Secret would."""
    objects = rendered["prod"]
    (container,) = named(objects, "Deployment", workload)["spec"]["template"]["spec"]["containers"]
    argv = _command(container)
    _require_module(argv)
    environ = container_environment(objects, container)
    result = _run(argv, environ)
    assert result.returncode == 2, f"{shlex.join(argv)} exited {result.returncode}:\n{result.stderr}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("configuration error: "), result.stderr
    assert re.search(r"CACERT_\w+_FILE points at /var/run/secrets/cacert/", lines[0]), lines[0]


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_entry_point_with_no_configuration_names_the_first_missing_variable(image: str) -> None:
    _, stages = parse_dockerfile(DOCKER / f"{image}.Dockerfile")
    final = stages[-1]
    argv = _exec_form(final.all("ENTRYPOINT")[0]) + [a for c in final.all("CMD") for a in _exec_form(c)]
    _require_module(argv)
    env = dict(item.split("=", 1) for arg in final.all("ENV") for item in shlex.split(arg) if "=" in item)
    env.pop("PATH", None)
    result = _run(argv, env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "configuration error: CACERT_KAFKA_BOOTSTRAP is required but not set "
        "(nor CACERT_KAFKA_BOOTSTRAP_FILE)"
    )


def test_signer_without_a_mode_prints_usage() -> None:
    result = _run(["python", "-m", "services.signer"], {})
    assert result.returncode == 2
    assert "python -m services.signer issuing" in result.stderr and "status" in result.stderr


def test_images_are_the_ones_the_overlays_deploy(rendered: dict[str, list[Obj]]) -> None:
    used = {
        _image_of(c)
        for objects in rendered.values()
        for d in of_kind(objects, "Deployment")
        for c in d["spec"]["template"]["spec"]["containers"]
        if "cacert" in c["image"]
    }
    assert used == set(IMAGES)
    sidecars = {
        _image_of(c)
        for objects in rendered.values()
        for d in of_kind(objects, "Deployment")
        for c in d["spec"]["template"]["spec"].get("initContainers", [])
        if "cacert" in c["image"]
    }
    assert sidecars == {"resolver"}, "the validating resolver beside domain_verify (tests/deploy/test_perspectives)"
    # and the opt-in load-test Job's image (tests/deploy/test_signer_loadtest.py)
    assert {p.name.removesuffix(".Dockerfile") for p in DOCKER.glob("*.Dockerfile")} == (
        set(IMAGES) | sidecars | set(TOOL_IMAGES))
    for objects in rendered.values():
        for workload in SERVICE_WORKLOADS:
            (container,) = named(objects, "Deployment", workload)["spec"]["template"]["spec"]["containers"]
            assert container_environment(objects, container)["CACERT_HTTP_HOST"] == "0.0.0.0"  # noqa: S104


def test_prod_pulls_every_image_by_digest(rendered: dict[str, list[Obj]]) -> None:
    """A tag can be moved to other content, a digest cannot (the release process fills them in)."""
    for _, template in pod_templates(rendered["prod"]):
        for container in containers(template):
            assert re.search(r"@sha256:[0-9a-f]{64}$", container["image"]), container["image"]


def test_base_images_are_pinned_to_a_release() -> None:
    """A floating base (`python:3.11-slim`) changes under a rebuild; the bases name an exact release."""
    for path in DOCKER.glob("*.Dockerfile"):
        args = dict(line.removeprefix("ARG ").split("=", 1) for line in path.read_text().splitlines()
                    if line.startswith("ARG ") and "_IMAGE=" in line)
        assert args, path.name
        for base in args.values():
            assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm|debian:12\.\d+-slim", base), f"{path.name}: {base}"
