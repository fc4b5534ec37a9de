"""The Kubernetes deployment (deploy/kubernetes): every kustomization renders, every object validates
against the Kubernetes OpenAPI schemas (kubernetes-validate, strict), and the properties a reviewer
checks hold in what is rendered — not in the source files. The commands the manifests run (upgrade,
backup, restore, the init container's export, the External Secrets webhook call) are then run for
real against a local store and a local `serve`, with the arguments taken from the rendered objects.

Needs `kubectl` (with its built-in kustomize); skipped without it unless LLM_CONFIG_REQUIRE_SERVICES=1.
The External Secrets CRDs are checked with the validators of @kubernetes-models/external-secrets
(npm) when node and npm are there, and structurally in any case.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from tests.ops.conftest import wait_until_answers

pytestmark = pytest.mark.ops

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
REQUIRE = os.environ.get("LLM_CONFIG_REQUIRE_SERVICES") == "1"
KUBECTL = shutil.which("kubectl")
LLM_CONFIG = Path(sys.executable).with_name("llm-config")
IMAGE = "ghcr.io/llm-config-manager/llm-config-manager"
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())

OVERLAYS = ("base", "overlays/dev", "overlays/prod")
EXAMPLES = ("examples/consume-init", "examples/external-secrets")
OPS = ("ops/restore", "ops/rotate-key")
ALL_DIRS = OVERLAYS + EXAMPLES + OPS
ESO_GROUP = "external-secrets.io/"


def _unavailable(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"{reason} (LLM_CONFIG_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@functools.cache
def _render(directory: str) -> tuple[dict[str, Any], ...]:
    """`kubectl kustomize deploy/kubernetes/<directory>`, parsed."""
    assert KUBECTL is not None
    proc = subprocess.run([KUBECTL, "kustomize", str(K8S / directory)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, f"kubectl kustomize {directory} failed:\n{proc.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc)


@pytest.fixture
def render() -> Any:
    if KUBECTL is None:
        _unavailable("kubectl is not installed (Debian: kubernetes-client)")
    return _render


def _find(objs: tuple[dict[str, Any], ...], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def _one(objs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    found = _find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
        return obj["spec"]["template"]["spec"]
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def _pods(objs: tuple[dict[str, Any], ...]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for obj in objs:
        spec = _pod_spec(obj)
        if spec is not None:
            yield obj, spec


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def _ours(container: dict[str, Any]) -> bool:
    return bool(container["image"].startswith(IMAGE + ":"))


# --- render + schema -------------------------------------------------------------------------------


@pytest.mark.parametrize("directory", ALL_DIRS)
def test_renders_and_every_object_validates(render: Any, directory: str) -> None:
    """`kubectl kustomize DIR` works and each built-in object passes kubernetes-validate --strict."""
    objs = render(directory)
    assert objs, f"{directory} renders nothing"
    checked = 0
    for obj in objs:
        if obj["apiVersion"].startswith(ESO_GROUP):
            continue  # CRDs: test_external_secrets_* below
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{directory}: {obj['kind']}/{obj['metadata']['name']} invalid for "
                            f"Kubernetes {version}: {exc.message} at {list(exc.path)}")
        checked += 1
    assert checked or directory == "examples/external-secrets"


@pytest.mark.parametrize("directory", ALL_DIRS)
def test_no_secret_object_carries_data(render: Any, directory: str) -> None:
    """Secrets are references only: no rendered Secret with data or stringData, no secretGenerator."""
    for obj in render(directory):
        if obj["kind"] == "Secret":
            assert not obj.get("data") and not obj.get("stringData"), f"{directory}: Secret {obj['metadata']}"
    for kfile in K8S.rglob("kustomization.yaml"):
        assert "secretGenerator" not in kfile.read_text(), kfile


# --- the API Deployment -----------------------------------------------------------------------------


@pytest.mark.parametrize("directory", OVERLAYS)
def test_probes_ready_and_live_never_health(render: Any, directory: str) -> None:
    objs = render(directory)
    api = _one(objs, "Deployment", "llm-config")["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert api["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert api["startupProbe"]["httpGet"]["path"] == "/health/live"
    for obj, spec in _pods(objs):
        for c in _containers(spec):
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                path = c.get(probe, {}).get("httpGet", {}).get("path")
                assert path != "/health", f"{obj['metadata']['name']}/{c['name']} {probe} on /health"


@pytest.mark.parametrize("directory", ALL_DIRS)
def test_security_context_everywhere(render: Any, directory: str) -> None:
    """Every pod: non-root, seccomp RuntimeDefault, no service-account token; every container: read-only
    root, no privilege escalation, all capabilities dropped; ours as 10001:10001."""
    pods = list(_pods(render(directory)))
    assert pods or directory == "examples/external-secrets"
    for obj, spec in pods:
        where = f"{directory}: {obj['kind']}/{obj['metadata']['name']}"
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True, where
        assert psc["seccompProfile"]["type"] == "RuntimeDefault", where
        assert spec["automountServiceAccountToken"] is False, where
        for c in _containers(spec):
            csc = c["securityContext"]
            assert csc["readOnlyRootFilesystem"] is True, (where, c["name"])
            assert csc["allowPrivilegeEscalation"] is False, (where, c["name"])
            assert csc["capabilities"]["drop"] == ["ALL"], (where, c["name"])
            assert csc["seccompProfile"]["type"] == "RuntimeDefault", (where, c["name"])
            assert csc.get("privileged", False) is False, (where, c["name"])
            if _ours(c):
                assert csc.get("runAsUser", psc.get("runAsUser")) == 10001, (where, c["name"])
                assert csc.get("runAsGroup", psc.get("runAsGroup")) == 10001, (where, c["name"])
                assert "/tmp" in {m["mountPath"] for m in c.get("volumeMounts", [])}, (where, c["name"])


@pytest.mark.parametrize("directory", ALL_DIRS)
def test_every_container_has_requests_and_limits(render: Any, directory: str) -> None:
    for obj, spec in _pods(render(directory)):
        for c in _containers(spec):
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(part, {})), (directory, obj["metadata"]["name"], c["name"])


@pytest.mark.parametrize("directory", OVERLAYS)
def test_replicas_serve_no_upgrade_and_the_job_upgrades(render: Any, directory: str) -> None:
    objs = render(directory)
    api = _one(objs, "Deployment", "llm-config")["spec"]["template"]["spec"]["containers"][0]
    assert api["args"] == ["serve", "--no-upgrade"]
    assert _env(api)["LLM_CONFIG_HOST"]["value"] == "0.0.0.0"  # noqa: S104 - the deliberate in-pod bind
    job = _one(objs, "Job", "llm-config-upgrade")["spec"]["template"]["spec"]["containers"][0]
    assert job["args"] == ["upgrade"]
    assert _ours(api) and _ours(job)
    cron = _one(objs, "CronJob", "llm-config-backup")
    backup = _pod_spec(cron)
    assert backup is not None
    assert "llm-config backup \"/backup/llm-config-$(date" in backup["containers"][0]["args"][0]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in backup["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"llm-config-backup"}
    assert _find(objs, "PersistentVolumeClaim", "llm-config-backup")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"


@pytest.mark.parametrize("directory", OVERLAYS + OPS)
def test_master_key_is_a_secret_file_and_storage_a_secret_ref(render: Any, directory: str) -> None:
    """Each of our pods that opens the store: the key from Secret llm-config-master-key as a 0440 file
    with fsGroup 10001 (the key-file rule for a root-owned file), LLM_CONFIG_KEY_FILE pointing at it,
    LLM_CONFIG_STORAGE from Secret llm-config-database key url; never a key in the environment."""
    seen = 0
    for _obj, spec in _pods(render(directory)):
        for c in _containers(spec):
            if not _ours(c):
                continue
            seen += 1
            env = _env(c)
            assert env["LLM_CONFIG_STORAGE"]["valueFrom"]["secretKeyRef"] == {"name": "llm-config-database",
                                                                              "key": "url"}
            assert "LLM_CONFIG_KEY" not in env and "LLM_CONFIG_ENCRYPTION_KEY" not in env
            key_file = Path(env["LLM_CONFIG_KEY_FILE"]["value"])
            mount = next(m for m in c["volumeMounts"] if m["mountPath"] == str(key_file.parent))
            assert mount["readOnly"] is True
            volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
            assert volume["secret"]["secretName"] == "llm-config-master-key"
            assert volume["secret"]["defaultMode"] == 0o440
            assert volume["secret"]["items"] == [{"key": "master-key", "path": key_file.name}]
            assert spec["securityContext"]["fsGroup"] == 10001
    assert seen >= (1 if directory in OPS else 3)


def test_prod_three_replicas_hpa_pdb_spread_tracing(render: Any) -> None:
    objs = render("overlays/prod")
    dep = _one(objs, "Deployment", "llm-config")
    assert dep["spec"]["replicas"] == 3
    hpa = _one(objs, "HorizontalPodAutoscaler", "llm-config")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
    assert hpa["spec"]["scaleTargetRef"]["name"] == "llm-config"
    assert _one(objs, "PodDisruptionBudget", "llm-config")["spec"]["minAvailable"] == 2
    spread = dep["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {t["topologyKey"] for t in spread} == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    settings = _one(objs, "ConfigMap", "llm-config-settings")["data"]
    assert settings["LLM_CONFIG_TRACING"] == "1" and settings["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert settings["LLM_CONFIG_TRUSTED_PROXY"]
    assert all(envfrom["configMapRef"]["name"] == "llm-config-settings"
               for envfrom in dep["spec"]["template"]["spec"]["containers"][0]["envFrom"])
    ingress = _one(objs, "Ingress", "llm-config")
    assert ingress["spec"]["tls"][0]["secretName"] == "llm-config-tls"
    assert ingress["spec"]["tls"][0]["hosts"] == [ingress["spec"]["rules"][0]["host"]]
    assert not _find(objs, "StatefulSet")  # PostgreSQL is external in production
    svc = _one(objs, "Service", "llm-config")
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]


def test_prod_tracing_settings_are_ones_the_server_accepts(render: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The OTEL_* variables of the prod ConfigMap build a tracer provider (exporter, sampler), as
    `serve --tracing` builds it at start; an unsupported exporter protocol would stop every replica."""
    from llm_config import tracing

    settings = _one(render("overlays/prod"), "ConfigMap", "llm-config-settings")["data"]
    for name, value in settings.items():
        if name.startswith("OTEL_"):
            monkeypatch.setenv(name, value)
    provider = tracing.provider_from_env("0.1.0")
    try:
        assert provider is not None
        assert provider.resource.attributes["service.name"] == settings["OTEL_SERVICE_NAME"]
        assert "TraceIdRatio" in type(provider.sampler._root).__name__  # parentbased_traceidratio, 0.1
    finally:
        provider.shutdown()


def test_dev_one_replica_and_nothing_blocks_a_drain(render: Any) -> None:
    objs = render("overlays/dev")
    dep = _one(objs, "Deployment", "llm-config")
    assert dep["spec"]["replicas"] == 1
    assert not _find(objs, "HorizontalPodAutoscaler")
    pdb = _one(objs, "PodDisruptionBudget", "llm-config")["spec"]
    assert "minAvailable" not in pdb and pdb["maxUnavailable"] == 1
    pg = _one(objs, "StatefulSet", "llm-config-postgres")
    pg_env = _env(pg["spec"]["template"]["spec"]["containers"][0])
    assert pg_env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "llm-config-dev-postgres"
    assert {o["metadata"].get("namespace") for o in objs if o["kind"] != "Namespace"} == {"llm-config-dev"}


def test_selectors_do_not_overlap(render: Any) -> None:
    """The API Service selects the API pods only (not Redis, PostgreSQL, or the Jobs' pods)."""
    objs = render("overlays/dev")
    selector = _one(objs, "Service", "llm-config")["spec"]["selector"]
    matching = [o["metadata"]["name"] for o in objs if o["kind"] in ("Deployment", "StatefulSet", "Job", "CronJob")
                and (lab := (o["spec"]["jobTemplate"]["spec"]["template"] if o["kind"] == "CronJob"
                             else o["spec"]["template"])["metadata"]["labels"])
                and all(lab.get(k) == v for k, v in selector.items())]
    assert matching == ["llm-config"]


# --- examples -------------------------------------------------------------------------------------------


def test_init_container_exports_with_a_scoped_key_from_a_secret(render: Any) -> None:
    objs = render("examples/consume-init")
    spec = _one(objs, "Deployment", "chatbot")["spec"]["template"]["spec"]
    init = spec["initContainers"][0]
    assert _ours(init) and init["args"][0] == "export" and "--reveal" in init["args"]
    env = _env(init)
    assert env["LLM_CONFIG_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "chatbot-llm-config-key"
    assert env["LLM_CONFIG_SERVER"]["value"].startswith("https://")
    out = init["args"][init["args"].index("--output") + 1]
    shared = {m["name"] for m in init["volumeMounts"] if out.startswith(m["mountPath"] + "/")}
    app_mounts = {m["name"] for m in spec["containers"][0]["volumeMounts"]}
    assert shared and shared <= app_mounts
    volume = next(v for v in spec["volumes"] if v["name"] in shared)
    assert volume["emptyDir"]["medium"] == "Memory"


WEBHOOK_FIELDS = {"auth", "body", "caBundle", "caProvider", "headers", "method", "result", "secrets", "timeout", "url"}


def test_external_secrets_structure(render: Any) -> None:
    """Structural check of the two CRD objects (field names from the ESO v1 API's WebhookProvider,
    WebhookSecret and ExternalSecret types), always run; the schema check below needs node."""
    objs = render("examples/external-secrets")
    store = _one(objs, "SecretStore", "llm-config")
    es = _one(objs, "ExternalSecret", "chatbot-openai")
    assert store["apiVersion"] == es["apiVersion"] == "external-secrets.io/v1"
    assert list(store["spec"]["provider"]) == ["webhook"]
    hook = store["spec"]["provider"]["webhook"]
    assert set(hook) <= WEBHOOK_FIELDS, set(hook) - WEBHOOK_FIELDS
    assert hook["url"].startswith("https://") and "{{ .remoteRef.key }}" in hook["url"]
    assert hook["result"] == {"jsonPath": "$.value"}
    names = {s["name"]: s["secretRef"] for s in hook["secrets"]}
    token = re.fullmatch(r"Bearer \{\{ \.(\w+)\.(\w+) \}\}", hook["headers"]["Authorization"])
    assert token and token.group(1) in names and names[token.group(1)]["key"] == token.group(2)
    assert set(es["spec"]["secretStoreRef"].items()) == {("name", "llm-config"), ("kind", "SecretStore")}
    assert es["spec"]["target"]["name"]
    for item in es["spec"]["data"]:
        assert set(item) == {"secretKey", "remoteRef"}
        assert re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)*/-/[A-Za-z0-9][\w.-]*", item["remoteRef"]["key"])


@pytest.fixture(scope="module")
def eso_validator() -> Path:
    """node_modules for deploy/kubernetes/examples/external-secrets/schema-check (npm ci, cached)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        _unavailable("node/npm not installed: the ESO schema check needs @kubernetes-models/external-secrets")
    src = K8S / "examples" / "external-secrets" / "schema-check"
    digest = hashlib.sha256((src / "package-lock.json").read_bytes()).hexdigest()[:16]
    cache = Path.home() / ".cache" / "llm-config-ops" / f"eso-schema-check-{digest}"
    if not (cache / "node_modules" / "@kubernetes-models" / "external-secrets").is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy2(src / name, cache / name)
        proc = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                              cwd=cache, capture_output=True, text=True, timeout=300, check=False)
        if proc.returncode != 0:
            _unavailable(f"npm ci of the ESO models failed: {proc.stderr[-500:]}")
    shutil.copy2(src / "validate.mjs", cache / "validate.mjs")
    return cache


def test_external_secrets_validate_against_the_eso_models(render: Any, eso_validator: Path) -> None:
    objs = [o for o in render("examples/external-secrets") if o["apiVersion"].startswith(ESO_GROUP)]
    proc = subprocess.run(["node", "validate.mjs"], cwd=eso_validator, input=json.dumps(objs),
                          capture_output=True, text=True, timeout=60, check=False)
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0, results or proc.stderr
    assert sorted((r["kind"], r["result"]) for r in results) == [("ExternalSecret", "valid"),
                                                                   ("SecretStore", "valid")]
    # The validator can fail: a wrong type and a missing required field are refused.
    broken = json.loads(json.dumps(objs))
    for o in broken:
        if o["kind"] == "SecretStore":
            o["spec"]["provider"]["webhook"]["url"] = 5
        else:
            del o["spec"]["data"][0]["remoteRef"]["key"]
    proc = subprocess.run(["node", "validate.mjs"], cwd=eso_validator, input=json.dumps(broken),
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert [json.loads(line)["result"] for line in proc.stdout.splitlines()] == ["invalid", "invalid"]


# --- the manifests' commands, run for real ---------------------------------------------------------


def _container_env(tmp: Path, key_file: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_CONFIG_")}
    env.update(PATH=f"{LLM_CONFIG.parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
               LLM_CONFIG_STORAGE=f"sqlite:///{tmp / 'store' / 'config.db'}", LLM_CONFIG_KEY_FILE=str(key_file))
    return env


def _cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(LLM_CONFIG), *args], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    if check:
        assert proc.returncode == 0, f"llm-config {' '.join(args)}: {proc.stderr}"
    return proc


def _shell(script: str, env: dict[str, str], backup_dir: Path) -> subprocess.CompletedProcess[str]:
    """A manifest's `sh -c` script, with the PVC's /backup mapped to a local folder."""
    script = script.replace("/backup", str(backup_dir))
    return subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.fixture
def store_env(tmp_path: Path) -> dict[str, str]:
    key_file = tmp_path / "master-key"
    key_file.write_text(subprocess.run([str(LLM_CONFIG), "keygen"], capture_output=True, text=True,
                                       check=True).stdout)
    key_file.chmod(0o600)  # owned by this (test) user: 0600 (a root-owned Secret file may be 0440)
    (tmp_path / "store").mkdir(mode=0o700)
    return _container_env(tmp_path, key_file)


def test_upgrade_job_backup_cronjob_and_restore_job_commands_work(render: Any, store_env: dict[str, str],
                                                                  tmp_path: Path) -> None:
    """The Job's `upgrade`, the README's first-admin-key command, the CronJob's backup script and the
    restore Job's script, exactly as rendered, against a real (SQLite) store."""
    prod = render("overlays/prod")
    job_args = _one(prod, "Job", "llm-config-upgrade")["spec"]["template"]["spec"]["containers"][0]["args"]
    serve_args = _one(prod, "Deployment", "llm-config")["spec"]["template"]["spec"]["containers"][0]["args"]
    cron = _pod_spec(_one(prod, "CronJob", "llm-config-backup"))
    assert cron is not None
    restore = _pod_spec(_one(render("ops/restore"), "Job", "llm-config-restore"))
    assert restore is not None
    restore_cm = _find(render("ops/restore"), "ConfigMap")[0]["data"]

    # serve --no-upgrade refuses a store with pending migrations (the replicas wait for the Job).
    proc = _cli(store_env, *serve_args, "--port", str(_free_port()), check=False)
    assert proc.returncode != 0 and "llm-config upgrade" in proc.stderr
    _cli(store_env, *job_args)
    assert "no migration pending" in _cli(store_env, *job_args).stdout  # a second run does nothing

    admin = json.loads(_cli(store_env, "keys", "create", "--role", "admin", "--name", "ops-admin",
                            "--format", "json").stdout)
    assert admin["key"].startswith("llmc_")
    _cli(store_env, "set", "acme/chatbot", "openai.api_key", "sk-canary-1", "--secret", "-e", "production")

    backups = tmp_path / "backups"
    backups.mkdir()
    proc = _shell(cron["containers"][0]["args"][0], store_env, backups)
    assert proc.returncode == 0, proc.stderr
    files = list(backups.glob("llm-config-*.backup"))
    assert len(files) == 1 and re.fullmatch(r"llm-config-\d{8}T\d{6}Z\.backup", files[0].name)

    _cli(store_env, "set", "acme/chatbot", "openai.api_key", "sk-canary-2", "--secret", "-e", "production")
    env = dict(store_env, **restore_cm)
    proc = _shell(restore["containers"][0]["args"][0], env, backups)
    assert proc.returncode == 0, proc.stderr
    got = _cli(store_env, "get", "acme/chatbot", "openai.api_key", "-e", "production", "--reveal",
               "--format", "json").stdout
    assert json.loads(got)["value"] == "sk-canary-1"

    # Without the key the backup refuses (why the CronJob mounts it).
    no_key = {k: v for k, v in store_env.items() if k != "LLM_CONFIG_KEY_FILE"}
    assert _shell(cron["containers"][0]["args"][0], no_key, backups).returncode != 0


def test_key_rotation_runbook_with_the_rotate_key_job(render: Any, store_env: dict[str, str],
                                                     tmp_path: Path) -> None:
    """README "Key rotation": keyring old,new -> the Job -> new,old -> the Job again -> new alone; a
    secret written under each keyring stays readable, and doctor shows the old key id sealing nothing."""
    job = _pod_spec(_one(render("ops/rotate-key"), "Job", "llm-config-rotate-key"))
    assert job is not None
    container = job["containers"][0]
    new_file_in_pod = Path(container["args"][container["args"].index("--new-key-file") + 1])
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(new_file_in_pod.parent))
    volume = next(v for v in job["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "llm-config-new-master-key"

    key_file = Path(store_env["LLM_CONFIG_KEY_FILE"])
    old = key_file.read_text().strip()
    new_key_file = tmp_path / "new-master-key"
    new_key_file.write_text(_cli(store_env, "keygen").stdout)
    new_key_file.chmod(0o600)
    new = new_key_file.read_text().strip()
    args = [str(new_key_file) if a == str(new_file_in_pod) else a for a in container["args"]]

    def keyring(*keys: str) -> None:  # what `kubectl create secret ... --dry-run=client | apply` does
        key_file.write_text(",".join(keys))
        key_file.chmod(0o600)

    _cli(store_env, "upgrade")
    _cli(store_env, "set", "acme", "k1", "v-old", "--secret")
    keyring(old, new)
    _cli(store_env, "set", "acme", "k2", "v-old-new", "--secret")
    _cli(store_env, *args)
    keyring(new, old)
    _cli(store_env, "set", "acme", "k3", "v-new-old", "--secret")
    _cli(store_env, *args)
    keyring(new)
    for k, v in (("k1", "v-old"), ("k2", "v-old-new"), ("k3", "v-new-old")):
        assert json.loads(_cli(store_env, "get", "acme", k, "--reveal", "--format", "json").stdout)["value"] == v
    keyring(old)
    assert _cli(store_env, "get", "acme", "k1", "--reveal", check=False).returncode != 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(store_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    _cli(store_env, "upgrade")
    port = _free_port()
    env = dict(store_env, LLM_CONFIG_HOST="127.0.0.1", LLM_CONFIG_RATE_LIMIT_IP="0")
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([str(LLM_CONFIG), "serve", "--no-upgrade", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(f"{url}/health/ready", proc, tmp_path / "serve.log", timeout=30)
        yield url, store_env
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _scoped_key(env: dict[str, str], role: str) -> str:
    out = _cli(env, "keys", "create", "--name", f"chatbot-{role}", "--role", role, "--namespace", "acme/chatbot",
               "--environment", "production", "--format", "json").stdout
    return str(json.loads(out)["key"])


def test_init_container_and_external_secrets_recipe_against_a_live_server(
        render: Any, live_server: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    url, env = live_server
    _cli(env, "set", "acme/chatbot", "openai.api_key", "sk-canary-init", "--secret", "-e", "production")
    _cli(env, "set", "acme/chatbot", "openai.model", "gpt-4o", "-e", "production")
    _cli(env, "set", "acme/other", "openai.api_key", "sk-not-yours", "--secret", "-e", "production")
    editor = _scoped_key(env, "editor")

    # (a) the init container's arguments, as rendered, with /config mapped to a local folder.
    init = _one(render("examples/consume-init"), "Deployment", "chatbot")["spec"]["template"]["spec"]
    init_c = init["initContainers"][0]
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    args = [a.replace("/config", str(config_dir)) for a in init_c["args"]]
    client_env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_CONFIG_")}
    client_env.update(LLM_CONFIG_SERVER=url, LLM_CONFIG_API_KEY=editor)
    proc = subprocess.run([str(LLM_CONFIG), *args], env=client_env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    dotenv = (config_dir / "app.env").read_text()
    assert dotenv.splitlines() == ["OPENAI_API_KEY=sk-canary-init", "OPENAI_MODEL=gpt-4o"]
    # the app container's start line loads it into its environment
    app_script = init["containers"][0]["args"][0].split("&& exec")[0].replace("/config", str(config_dir))
    shown = subprocess.run(["/bin/sh", "-c", f"{app_script} && printenv OPENAI_API_KEY"], capture_output=True,
                           text=True, check=True).stdout
    assert shown.strip() == "sk-canary-init"
    # the scope holds: the same key cannot export another namespace
    other = [a if a != "acme/chatbot" else "acme/other" for a in args[:-1]] + [str(config_dir / "other.env")]
    assert subprocess.run([str(LLM_CONFIG), *other], env=client_env, capture_output=True, text=True, timeout=60,
                          check=False).returncode != 0

    # (b) the External Secrets webhook: the request ESO builds from the SecretStore's templates.
    eso = render("examples/external-secrets")
    hook = _one(eso, "SecretStore", "llm-config")["spec"]["provider"]["webhook"]
    es = _one(eso, "ExternalSecret", "chatbot-openai")
    secret_name = hook["secrets"][0]["name"]
    token_key = hook["secrets"][0]["secretRef"]["key"]
    template_data = {secret_name: {token_key: editor}}
    expected = {"OPENAI_API_KEY": "sk-canary-init", "OPENAI_MODEL": "gpt-4o"}
    for item in es["spec"]["data"]:
        target = _go_template(hook["url"], {"remoteRef": item["remoteRef"], **template_data})
        target = re.sub(r"^https://[^/]+", url, target)
        headers = {k: _go_template(v, template_data) for k, v in hook["headers"].items()}
        resp = httpx.request(hook["method"], target, headers=headers, timeout=10)
        assert resp.status_code == 200, resp.text
        assert _json_path(resp.json(), hook["result"]["jsonPath"]) == expected[item["secretKey"]]
    # a viewer key cannot reveal: the reason the recipe names an editor key
    viewer = _scoped_key(env, "viewer")
    first = es["spec"]["data"][0]
    target = re.sub(r"^https://[^/]+", url, _go_template(hook["url"], {"remoteRef": first["remoteRef"]}))
    assert httpx.get(target, headers={"Authorization": f"Bearer {viewer}"}, timeout=10).status_code == 403


def _go_template(text: str, data: dict[str, Any]) -> str:
    """The `{{ .a.b }}` field references the webhook provider uses here (nothing else is supported)."""
    def field(match: re.Match[str]) -> str:
        value: Any = data
        for part in match.group(1).split("."):
            value = value[part]
        return str(value)
    out = re.sub(r"\{\{ \.([\w.]+) \}\}", field, text)
    assert "{{" not in out, out
    return out


def _json_path(doc: Any, path: str) -> Any:
    assert path.startswith("$.")
    for part in path[2:].split("."):
        doc = doc[part]
    return doc
