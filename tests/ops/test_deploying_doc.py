"""docs/deploying.md: every command on the page is run by a test.

Each command of the page's `sh` blocks is either run here, literally (keygen, the Secrets as
`kubectl create` would make them, the Kustomize renders, `serve --tracing` with the console
exporter), or named with the test that runs it or what it sends (`ELSEWHERE`). A command added to
the page without a test, or a test entry whose command left the page, fails
`test_every_command_on_the_page_has_a_test`.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.ops.conftest import require_tool, wait_until_answers

pytestmark = pytest.mark.ops

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "deploying.md"
BIN = Path(sys.executable).parent

# command on the page → the test that runs it, or the equivalent it can run here
ELSEWHERE: dict[str, str] = {
    # built with a locally made Debian base as BASE_IMAGE; the image's contents are then run as its user
    "podman build --format docker -t llm-config-manager:0.1.0 -f Containerfile .":
        "tests/ops/test_image.py::test_image_metadata",
    "LLM_CONFIG_PORT=8080 python -m llm_config.server.probe":
        "tests/e2e/test_probe.py::test_the_probe_exits_0_for_a_live_server",
    "cd deploy/compose && sudo ./init-secrets.sh":
        "tests/ops/test_compose.py::test_init_secrets_creates_consistent_private_files_once",
    # the CronJob's own script, with the Deployment's environment (also: test_the_backup_command_is_the_cronjobs)
    'llm-config backup "/backup/llm-config-$(date -u +%Y%m%dT%H%M%SZ).backup"':
        "tests/ops/test_manifests.py::test_upgrade_job_backup_cronjob_and_restore_job_commands_work",
    "llm-config rotate-key --new-key-file new.key":
        "tests/ops/test_manifests.py::test_key_rotation_runbook_with_the_rotate_key_job",
    "llm-config upgrade": "tests/ops/test_failover.py::test_replica_failover_under_load",
}
HERE: frozenset[str] = frozenset({
    "llm-config keygen > master.key",
    "chmod 600 master.key",
    "kubectl -n llm-config create secret generic llm-config-master-key --from-file=master-key=master.key",
    "kubectl -n llm-config create secret generic llm-config-database --from-file=url=database.url",
    "kubectl kustomize deploy/kubernetes/overlays/prod",
    "kubectl kustomize deploy/kubernetes/examples/consume-init",
    "kubectl kustomize deploy/kubernetes/examples/external-secrets",
    "LLM_CONFIG_TRACING=1 OTEL_TRACES_EXPORTER=console llm-config serve",
})


def page_commands() -> list[str]:
    """The commands of the page's `sh` blocks (continuation lines joined; comments and blanks skipped)."""
    commands: list[str] = []
    inside = False
    pending = ""
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            inside = line.strip() == "```sh" and not inside
            continue
        if not inside or not line.strip() or line.lstrip().startswith("#"):
            continue
        pending += line.strip()
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip() + " "
            continue
        commands.append(pending)
        pending = ""
    return commands


def shell(command: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`command` as a user types it, with this checkout's llm-config first on PATH."""
    environ = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
    return subprocess.run(["/bin/sh", "-c", command], cwd=cwd, env=environ, capture_output=True, text=True,
                          timeout=120, check=False)


def test_every_command_on_the_page_has_a_test() -> None:
    commands = page_commands()
    assert len(commands) == len(set(commands)), "a command twice on the page: keep one"
    assert set(commands) == set(ELSEWHERE) | HERE


@pytest.mark.parametrize("node", sorted(set(ELSEWHERE.values())))
def test_each_named_test_exists(node: str) -> None:
    path, name = node.split("::")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    assert callable(getattr(module, name, None)), node


def render(directory: str) -> list[dict[str, Any]]:
    done = shell(f"kubectl kustomize {directory}", ROOT)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.mark.parametrize("command", sorted(c for c in HERE if c.startswith("kubectl kustomize ")))
def test_the_kustomize_commands_render(command: str) -> None:
    require_tool("kubectl")
    done = shell(command, ROOT)
    assert done.returncode == 0, done.stderr
    kinds = {doc["kind"] for doc in yaml.safe_load_all(done.stdout) if doc}
    assert kinds, command  # every object is validated in test_manifests.py


def test_the_backup_command_is_the_cronjobs() -> None:
    require_tool("kubectl")
    (command,) = [c for c in ELSEWHERE if c.startswith("llm-config backup ")]
    (cron,) = [d for d in render("deploy/kubernetes/overlays/prod") if d["kind"] == "CronJob"]
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert command in " ".join(container.get("command", []) + container.get("args", []))


def test_keygen_and_the_secrets_are_what_the_manifests_mount(tmp_path: Path) -> None:
    """The page's key and Secret commands, run (`kubectl create` with --dry-run=client: no cluster):
    the Secrets they make are the ones, with the keys, the prod Deployment reads."""
    require_tool("kubectl")
    for command in ("llm-config keygen > master.key", "chmod 600 master.key"):
        done = shell(command, tmp_path)
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "master.key").stat().st_mode & 0o777 == 0o600
    assert len((tmp_path / "master.key").read_text().strip()) == 44
    (tmp_path / "database.url").write_text("postgresql://llmconfig:PASSWORD@db.internal:5432/llmconfig")
    made: dict[str, set[str]] = {}
    for command in sorted(c for c in HERE if "create secret" in c):
        done = shell(command + " --dry-run=client -o json", tmp_path)
        assert done.returncode == 0, done.stderr
        secret = json.loads(done.stdout)
        made[secret["metadata"]["name"]] = set(secret["data"])
    deployment = next(d for d in render("deploy/kubernetes/overlays/prod")
                      if d["kind"] == "Deployment" and d["metadata"]["name"] == "llm-config")
    pod = deployment["spec"]["template"]["spec"]
    referenced: dict[str, set[str]] = {}
    for volume in pod["volumes"]:
        if "secret" in volume:
            items = volume["secret"].get("items") or []
            referenced.setdefault(volume["secret"]["secretName"], set()).update(i["key"] for i in items)
    for variable in pod["containers"][0].get("env", []):
        ref = variable.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            referenced.setdefault(ref["name"], set()).add(ref["key"])
    for name, keys in referenced.items():
        assert name in made, f"the Deployment reads Secret {name}, which the page never creates"
        assert keys <= made[name], name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_serve_with_tracing_prints_the_spans_of_a_request(tmp_path: Path) -> None:
    """`LLM_CONFIG_TRACING=1 OTEL_TRACES_EXPORTER=console llm-config serve`, on a fresh store and a free port:
    a request's spans reach the exporter, its access line names the trace."""
    (command,) = [c for c in HERE if c.endswith("llm-config serve")]
    port = free_port()
    key = shell("llm-config keygen", tmp_path).stdout.strip()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "LLM_CONFIG_KEY": key,
           "LLM_CONFIG_STORAGE": str(tmp_path / "store"), "LLM_CONFIG_PORT": str(port),
           "OTEL_BSP_SCHEDULE_DELAY": "50"}
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("w") as stdout, err.open("w") as stderr:
        server = subprocess.Popen(["/bin/sh", "-c", command], cwd=tmp_path, env=env, stdout=stdout, stderr=stderr,
                                  start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_answers(f"{url}/health/live", server, err)
        admin = (tmp_path / "store" / "initial-admin-key").read_text().strip()
        answer = httpx.get(f"{url}/api/v1/configs/app/model", headers={"Authorization": f"Bearer {admin}"},
                           timeout=10)
        assert answer.status_code == 404
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the shell is gone; the server flushes its spans, then exits
            try:
                os.killpg(server.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
    printed = out.read_text()
    assert printed.count('"name": "GET /api/v1/configs/{ns}/{key}"') == 1, "one request, one server span"
    assert '"name": "llm_config.get"' in printed and '"name": "storage.get_current"' in printed
    assert admin not in printed
    lines = [json.loads(line) for line in err.read_text().splitlines() if line.startswith("{")]
    (access,) = [line for line in lines if line.get("route") == "/api/v1/configs/{ns}/{key}"]
    assert len(access["trace_id"]) == 32 and access["trace_id"] in printed.replace("0x", "")


def test_every_benchmarks_section_the_page_cites_exists() -> None:
    """`(BENCHMARKS.md, "Section")`: a reader following the reference finds a heading that starts so."""
    import re

    cited = re.findall(r'BENCHMARKS\.md, "([^"]+)"', " ".join(PAGE.read_text(encoding="utf-8").split()))
    assert cited
    headings = [line.removeprefix("#").lstrip("#").strip() for line in
                (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    for section in cited:
        assert any(heading.startswith(section) for heading in headings), section
