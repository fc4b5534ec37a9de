"""deploy/compose: the compose file is valid Compose and says what the deployment promises (issue 12, part 2).

* `compose.yaml` validates against the Compose Specification JSON schema vendored in tests/ops/data
  (from the docker-compose 1.29.2 wheel; see compose_spec.md there), which also rejects a typo;
* three identical API replicas on `serve --no-upgrade`, read-only root filesystem, behind HAProxy, after a
  one-shot `migrate` (`llm-config upgrade`) that must complete first;
* PostgreSQL and Redis with health checks and volumes, Redis on the internal network only;
* secrets as files only: the master key, the database password (POSTGRES_PASSWORD_FILE) and the libpq
  password file (PGPASSFILE) — no literal secret anywhere under deploy/compose;
* only the balancer publishes a port; `haproxy -c` accepts haproxy.cfg with compose's environment, and
  every variable the cfg reads is set there with the cfg's own defaults;
* `init-secrets.sh` creates the three files 0600 for uid 10001, consistent, and never overwrites one.

The process-level proof (the same files run as real processes, a replica killed under load) is in
tests/ops/test_failover.py.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.conftest import REQUIRE_SERVICES

pytestmark = pytest.mark.ops

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
HAPROXY_CFG = COMPOSE_DIR / "haproxy.cfg"
INIT_SECRETS = COMPOSE_DIR / "init-secrets.sh"
SCHEMA_FILE = Path(__file__).parent / "data" / "compose_spec.json"
SCHEMA_SHA256 = "0dc04bd346dcfee1b1419628fff79937bbf076925f298f272a2b490e2b112bac"  # tests/ops/data/compose_spec.md
API_SERVICES = ("api-1", "api-2", "api-3")
IMAGE = "llm-config-manager:0.1.0"
CONTAINER_USER = "10001:10001"
MASTER_KEY_PATH = "/run/secrets/llm-config-master-key"


def load_compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())  # resolves the YAML merge keys (<<)
    return data


def haproxy_binary() -> str:
    """Debian's haproxy; skipped on a laptop without it, a failure in CI (LLM_CONFIG_REQUIRE_SERVICES=1)."""
    found = shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy",) if os.access(p, os.X_OK)), None)
    if found:
        return found
    if REQUIRE_SERVICES:
        pytest.fail("haproxy is not installed (apt-get install haproxy) (LLM_CONFIG_REQUIRE_SERVICES=1)")
    pytest.skip("haproxy is not installed (apt-get install haproxy)")


def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    cls = jsonschema.Draft201909Validator  # the schema's $schema: draft 2019-09
    cls.check_schema(schema)
    return cls(schema)


def schema_errors(document: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator().iter_errors(document)]


# ----------------------------------------------------------------------------- the schema


def test_vendored_schema_is_the_published_one() -> None:
    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() == SCHEMA_SHA256
    assert SCHEMA_SHA256 in (SCHEMA_FILE.parent / "compose_spec.md").read_text()


def test_compose_file_validates_against_the_compose_spec() -> None:
    assert schema_errors(load_compose()) == []


def test_the_schema_catches_a_typo() -> None:
    """The validation is not vacuous: a misspelt key or a wrong condition is refused."""
    doc = load_compose()
    doc["services"]["postgres"]["helthcheck"] = doc["services"]["postgres"].pop("healthcheck")
    assert any("helthcheck" in e for e in schema_errors(doc))
    doc = load_compose()
    doc["services"]["api-1"]["depends_on"]["migrate"]["condition"] = "service_completed"
    assert schema_errors(doc)


@pytest.mark.parametrize("where, mutate", [
    ("top-level name", lambda d: d.__setitem__("name", "llm-config")),
    ("healthcheck.start_interval", lambda d: d["services"]["redis"]["healthcheck"].__setitem__("start_interval", "1s")),
    ("depends_on.required", lambda d: d["services"]["api-1"]["depends_on"]["redis"].__setitem__("required", True)),
])
def test_known_gaps_of_the_1_29_2_schema(where: str, mutate: Any) -> None:
    """Current Compose accepts these; the vendored schema predates them, so compose.yaml avoids them
    (documented in tests/ops/data/compose_spec.md). If this starts failing, a newer schema was vendored."""
    doc = copy.deepcopy(load_compose())
    mutate(doc)
    assert schema_errors(doc), where


# ----------------------------------------------------------------------------- what the file says


def test_three_identical_api_replicas_on_serve_no_upgrade() -> None:
    services = load_compose()["services"]
    replicas = [name for name, svc in services.items() if svc.get("command", [None])[0] == "serve"]
    assert sorted(replicas) == list(API_SERVICES)
    first = services["api-1"]
    for name in API_SERVICES:
        svc = services[name]
        assert svc == first, f"{name} differs from api-1"
        assert svc["command"] == ["serve", "--no-upgrade"]
        assert svc["image"] == IMAGE
        assert svc["build"] == {"context": "../..", "dockerfile": "Containerfile"}
        assert svc["user"] == CONTAINER_USER
        assert svc["read_only"] is True
        assert svc["tmpfs"] == ["/tmp"]
        assert svc["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert svc["depends_on"]["redis"] == {"condition": "service_healthy"}
        assert "ports" not in svc
        env = svc["environment"]
        assert env["LLM_CONFIG_HOST"] == "0.0.0.0"  # noqa: S104 - deliberate: reachable on the internal network only
        assert env["LLM_CONFIG_KEY_FILE"] == MASTER_KEY_PATH
        assert env["LLM_CONFIG_REDIS_URL"] == "redis://redis:6379/0"
        assert env["LLM_CONFIG_BOOTSTRAP_ADMIN_KEY_FILE"].startswith("/data/")
        assert any(v.endswith(":/data") for v in svc["volumes"])  # the admin key file lands on a volume
        assert "LLM_CONFIG_NO_UPGRADE" not in env or env["LLM_CONFIG_NO_UPGRADE"] == "1"


def test_migrate_runs_upgrade_once_without_the_master_key() -> None:
    services = load_compose()["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["upgrade"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert migrate["read_only"] is True and migrate["user"] == CONTAINER_USER
    assert [s["source"] for s in migrate["secrets"]] == ["pgpass"]  # least privilege: no master key
    assert "LLM_CONFIG_KEY_FILE" not in migrate["environment"]
    assert migrate["environment"]["LLM_CONFIG_STORAGE"] == services["api-1"]["environment"]["LLM_CONFIG_STORAGE"]


def test_only_the_balancer_publishes_a_port() -> None:
    services = load_compose()["services"]
    published = {name: svc["ports"] for name, svc in services.items() if svc.get("ports")}
    assert list(published) == ["haproxy"]
    assert len(published["haproxy"]) == 1
    assert published["haproxy"][0].endswith(":8080")
    assert "127.0.0.1" in published["haproxy"][0]  # loopback unless the operator says otherwise


def test_postgres_and_redis_have_health_checks_volumes_and_stay_internal() -> None:
    doc = load_compose()
    services = doc["services"]
    pg, rd = services["postgres"], services["redis"]
    assert pg["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert "-h" in pg["healthcheck"]["test"]  # TCP: not fooled by the image's socket-only init server
    assert rd["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert pg["image"].startswith("postgres:") and rd["image"].startswith("redis:")
    assert services["haproxy"]["image"].startswith("haproxy:")
    assert any(v.endswith(":/var/lib/postgresql/data") for v in pg["volumes"])
    assert any(v.endswith(":/data") for v in rd["volumes"])
    assert {v.split(":")[0] for s in services.values() for v in s.get("volumes", []) if not v.startswith(".")} \
        <= set(doc["volumes"])
    assert rd["networks"] == ["backend"] and pg["networks"] == ["backend"]
    assert doc["networks"]["backend"]["internal"] is True
    for name in (*API_SERVICES, "migrate"):
        assert services[name]["networks"] == ["backend"]


def test_trusted_proxy_is_the_backend_subnet() -> None:
    doc = load_compose()
    subnet = doc["networks"]["backend"]["ipam"]["config"][0]["subnet"]
    assert doc["services"]["api-1"]["environment"]["LLM_CONFIG_TRUSTED_PROXY"] == subnet
    assert "backend" in doc["services"]["haproxy"]["networks"]


def test_secrets_are_files_and_nothing_secret_is_in_the_yaml() -> None:
    doc = load_compose()
    services = doc["services"]
    assert doc["secrets"] == {
        "master-key": {"file": "./secrets/master.key"},
        "pgpass": {"file": "./secrets/pgpass"},
        "postgres-password": {"file": "./secrets/postgres-password"},
    }
    api = services["api-1"]
    targets = {s["source"]: s["target"] for s in api["secrets"]}
    assert targets == {"master-key": "llm-config-master-key", "pgpass": "pgpass"}
    assert f"/run/secrets/{targets['master-key']}" == MASTER_KEY_PATH
    assert api["environment"]["PGPASSFILE"] == f"/run/secrets/{targets['pgpass']}"
    pg_env = services["postgres"]["environment"]
    assert pg_env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres-password"
    assert "POSTGRES_PASSWORD" not in pg_env
    for name, svc in services.items():
        for var, value in (svc.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|(^|_)KEY$|API_KEY", var):
                assert var.endswith("_FILE"), f"{name}: {var} must point to a file"
            url = str(value)
            assert not re.search(r"://[^/@\s]*:[^/@\s]*@", url), f"{name}: {var} carries a password"


def test_no_literal_secret_under_deploy_compose() -> None:
    """No key, password or token in any file there: base64 of 32 bytes (a master key), long hex, an
    llm-config API key, a `password: value` — whatever the operator generates stays in secrets/ (ignored)."""
    patterns = {
        "base64 key": re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{43}=(?![A-Za-z0-9+/=])"),
        "long hex": re.compile(r"\b[0-9a-fA-F]{32,}\b"),
        "api key": re.compile(r"\b(?:lcm|llmc|sk)[-_][A-Za-z0-9_-]{16,}"),
        "password value": re.compile(r"(?i)password\s*[:=]\s*['\"]?(?!/run/secrets/)[^\s'\"#]{6,}"),
        "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    }
    tracked = subprocess.run(["git", "ls-files", "--others", "--cached", "--exclude-standard", "deploy/compose"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert "deploy/compose/compose.yaml" in tracked
    for rel in tracked:
        text = (ROOT / rel).read_text(errors="replace")
        for what, pattern in patterns.items():
            assert not pattern.search(text), f"{rel}: looks like a literal secret ({what}): {pattern.search(text)}"


def test_the_secrets_folder_ignores_everything_but_its_readme() -> None:
    for name, ignored in (("master.key", True), ("pgpass", True), ("postgres-password", True),
                          ("master.key.new", True), ("README.md", False)):
        rel = f"deploy/compose/secrets/{name}"
        rc = subprocess.run(["git", "check-ignore", "-q", rel], check=False, cwd=ROOT).returncode
        assert (rc == 0) is ignored, f"{rel} ignored={rc == 0}"


# ----------------------------------------------------------------------------- haproxy.cfg


def cfg_lines() -> list[str]:
    """haproxy.cfg without comments."""
    return [line.split("#")[0].strip() for line in HAPROXY_CFG.read_text().splitlines()]


def cfg_variables() -> set[str]:
    return set(re.findall(r'"\$\{([A-Z0-9_]+)\}"', "\n".join(cfg_lines())))


def cfg_defaults() -> dict[str, str]:
    return dict(re.findall(r'^\s*presetenv\s+(\S+)\s+"([^"]*)"', HAPROXY_CFG.read_text(), re.MULTILINE))


def test_haproxy_environment_in_compose_matches_the_cfg() -> None:
    env = load_compose()["services"]["haproxy"]["environment"]
    assert cfg_variables() <= set(cfg_defaults()), "every variable has a default in the cfg"
    defaults = cfg_defaults()
    for var in cfg_variables() - {"RETRIES"}:
        assert var in env, f"compose.yaml's haproxy sets no {var}"
        assert str(env[var]) == defaults[var], f"{var}: compose {env[var]!r} vs cfg default {defaults[var]!r}"
    assert {env["API_1_ADDR"], env["API_2_ADDR"], env["API_3_ADDR"]} == {f"{s}:8080" for s in API_SERVICES}
    assert load_compose()["services"]["haproxy"]["volumes"] == ["./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"]


def test_haproxy_checks_readiness_and_retries_only_what_is_safe() -> None:
    lines = cfg_lines()
    assert "option httpchk" in lines
    assert any(line.startswith("http-check send meth GET uri /health/ready") for line in lines)
    assert "http-check expect status 200" in lines
    retry_on = next(line for line in lines if line.startswith("retry-on "))
    assert "conn-failure" in retry_on.split()
    # a request that reached a replica is retried only when reading it twice is harmless
    assert "http-request disable-l7-retry unless METH_GET || METH_OPTIONS" in lines
    assert "option redispatch 1" in lines
    assert "option forwardfor" in lines
    assert sum(1 for line in lines if re.match(r'server api-\d "\$\{API_\d_ADDR\}" check$', line)) == 3


def test_haproxy_accepts_the_cfg_with_compose_environment(tmp_path: Path) -> None:
    haproxy = haproxy_binary()
    compose_env = {k: str(v) for k, v in load_compose()["services"]["haproxy"]["environment"].items()}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **compose_env}
    done = subprocess.run([haproxy, "-c", "-f", str(HAPROXY_CFG)], check=False, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Configuration file is valid" in done.stdout + done.stderr
    # outside Docker api-N does not resolve: the server starts disabled (init-addr none) instead of failing
    # With addresses that resolve there is not even a warning (-dW: warnings are errors).
    local = {**env, "API_1_ADDR": "127.0.0.1:18081", "API_2_ADDR": "127.0.0.1:18082",
             "API_3_ADDR": "127.0.0.1:18083", "LISTEN_ADDR": "127.0.0.1:18080", "STATS_ADDR": "127.0.0.1:18404"}
    done = subprocess.run([haproxy, "-dW", "-c", "-f", str(HAPROXY_CFG)], check=False, env=local,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    # and a broken cfg is refused, so the check above means something
    broken = tmp_path / "haproxy.cfg"
    broken.write_text(HAPROXY_CFG.read_text().replace("balance roundrobin", "balance round-robin"))
    refused = subprocess.run([haproxy, "-c", "-f", str(broken)], check=False, env=local, capture_output=True)
    assert refused.returncode != 0


# ----------------------------------------------------------------------------- init-secrets.sh


def test_init_secrets_creates_consistent_private_files_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    target = tmp_path / "secrets"
    env = {**os.environ}
    env.pop("LLM_CONFIG_SECRETS_OWNER", None)
    done = subprocess.run(["sh", str(INIT_SECRETS), str(target)], check=False, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    files = {name: target / name for name in ("master.key", "postgres-password", "pgpass")}
    for name, path in files.items():
        info = path.stat()
        assert info.st_mode & 0o777 == 0o600, name
        if os.geteuid() == 0:
            assert (info.st_uid, info.st_gid) == (10001, 10001), name  # the containers' user
    assert len(base64.b64decode(files["master.key"].read_text().strip(), validate=True)) == 32
    password = files["postgres-password"].read_text()
    assert re.fullmatch(r"[0-9a-f]{64}", password)
    assert files["pgpass"].read_text() == f"*:*:llmconfig:llmconfig:{password}\n"
    compose = load_compose()
    assert compose["services"]["postgres"]["environment"]["POSTGRES_USER"] == "llmconfig"
    assert compose["services"]["api-1"]["environment"]["LLM_CONFIG_STORAGE"].startswith("postgresql://llmconfig@")
    # from the point of view of llm-config in the containers (uid 10001) the master key file is acceptable
    from llm_config.crypto.keys import find_keyring

    if os.geteuid() == 0:
        monkeypatch.setattr(os, "geteuid", lambda: 10001)
    assert find_keyring(key_file=files["master.key"]) is not None
    # a second run never overwrites (a new master key would lock every secret away)
    before = {name: path.read_bytes() for name, path in files.items()}
    done = subprocess.run(["sh", str(INIT_SECRETS), str(target)], check=False, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "created" not in done.stdout
    assert {name: path.read_bytes() for name, path in files.items()} == before
