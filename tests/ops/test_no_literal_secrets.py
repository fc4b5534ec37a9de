"""No literal secret in any deployment file: everything under deploy/ (Kubernetes, compose, READMEs,
env and config files, lock files), plus a Containerfile/Dockerfile at the top if there is one.

What counts as a literal secret: an API key (`llmc_` and 20+ characters), a 32-byte key in base64
(44 characters ending in `=`, the shape of a master key), a password set to a literal value
(`password: x`, `PASSWORD=x`; references are fine: `*_FILE` settings, `--from-file=password=FILE`,
`$VAR`, `${VAR}` and `$(cmd)` placeholders), a URL with `user:password@` (unless the password is
such a placeholder), a PEM private key. The self-tests prove each pattern is caught, so this test can fail.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.ops

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
TOP_LEVEL = ("Containerfile", "Dockerfile", ".dockerignore", ".containerignore")
SKIP_DIRS = {"node_modules", ".git", "__pycache__"}

# A reference instead of a value: $VAR, ${VAR}, $(command), optionally quoted.
_PLACEHOLDER = r"""["']?\$(?:\{|\(|[A-Za-z_])"""

PATTERNS: dict[str, re.Pattern[str]] = {
    "API key": re.compile(r"llmc_[A-Za-z0-9_-]{20,}"),
    "base64 32-byte key": re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/]{43}=(?![A-Za-z0-9+/=])"),
    "PEM private key": re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"),
    "URL with user:password@": re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/:@'\"]+:(?!" + _PLACEHOLDER
                                          + r")[^\s/@'\"]+@"),
}
# A name containing "password"/"passwd" (any case) set to a value on the same line: `NAME=value`
# anywhere (env files, shell, --from-literal=password=...), `name: value` only as a key (at the start
# of the line, after indentation, `- ` or `export `), so prose such as "no password: the URL..." passes.
_NAME = r"""[A-Za-z0-9_.-]*pass(?:word|wd)[A-Za-z0-9_.-]*"""
_VALUE = r"""(?P<value>[^\s#,;]+)"""
_PASSWORD_EQ = re.compile(r"(?P<name>" + _NAME + r")[\"']?\s*=\s*" + _VALUE, re.IGNORECASE)
_PASSWORD_KEY = re.compile(r"""^\s*(?:-\s+|export\s+)?["']?(?P<name>""" + _NAME + r""")["']?\s*:\s*""" + _VALUE,
                           re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    kind: str
    excerpt: str


def _password_literal(line: str) -> bool:
    for m in [*_PASSWORD_EQ.finditer(line), *_PASSWORD_KEY.finditer(line)]:
        name, value = m.group("name"), m.group("value")
        if name.upper().endswith("_FILE") or line[: m.start()].endswith("--from-file="):
            continue  # a file holding the password, not the password
        if re.match(_PLACEHOLDER, value) or value in ("|", ">", "|-", ">-"):
            continue
        if value.strip("\"'") == "":
            continue
        return True
    return False


def scan_text(text: str, path: str = "<text>") -> list[Finding]:
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for kind, pattern in PATTERNS.items():
            if pattern.search(line):
                found.append(Finding(path, number, kind, line.strip()[:120]))
        if _password_literal(line):
            found.append(Finding(path, number, "password literal", line.strip()[:120]))
    return found


def deployment_files() -> list[Path]:
    files = []
    if DEPLOY.is_dir():
        for path in sorted(DEPLOY.rglob("*")):
            if path.is_file() and not SKIP_DIRS.intersection(path.relative_to(DEPLOY).parts):
                files.append(path)
    files += [ROOT / name for name in TOP_LEVEL if (ROOT / name).is_file()]
    return files


def test_deploy_directory_has_files() -> None:
    """The scan below has something to scan (the Kubernetes manifests at least)."""
    names = {p.relative_to(ROOT).as_posix() for p in deployment_files()}
    assert "deploy/kubernetes/base/deployment.yaml" in names
    assert any(n.endswith("README.md") for n in names)


def test_no_literal_secret_in_deployment_files() -> None:
    findings = []
    for path in deployment_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary: not a configuration file
        findings += scan_text(text, path.relative_to(ROOT).as_posix())
    assert not findings, "\n".join(f"{f.path}:{f.line}: {f.kind}: {f.excerpt}" for f in findings)


# --- the scanner can fail ----------------------------------------------------------------------------

# Each built at run time, so no scanner (ours or a hosting one) mistakes this file for a leak.
_B64_KEY = base64.b64encode(bytes(range(7, 39))).decode()
CAUGHT = {
    "API key": "LLM_CONFIG_API_KEY=llmc_" + "0KI1CjSwDGXQmVr4xVs6A4MaKwJWaE7O",
    "base64 32-byte key": "master-key: " + _B64_KEY,
    "PEM private key": "-----BEGIN " + "PRIVATE KEY-----",
    "PEM private key (RSA)": "-----BEGIN RSA " + "PRIVATE KEY-----",
    "URL with user:password@": "url: postgresql://llm_config:" + "hunter2@db:5432/llm_config",
    "password literal (yaml)": "  password: " + "hunter2",
    "password literal (env)": "POSTGRES_PASSWORD=" + "hunter2",
    "password literal (quoted)": 'redis_password = "' + 'hunter2"',
}
ALLOWED = {
    "file reference": "POSTGRES_PASSWORD_FILE: /run/secrets/postgres-password",
    "env placeholder": "POSTGRES_PASSWORD=${POSTGRES_PASSWORD}",
    "bare variable": "password: $PGPASSWORD",
    "command substitution": 'kubectl create secret generic x --from-literal=password="$(openssl rand -hex 24)"',
    "url placeholder": 'url: "postgresql://llm_config:${PGPASSWORD}@db:5432/llm_config"',
    "url without password": "LLM_CONFIG_REDIS_URL: redis://llm-config-redis:6379/0",
    "secretKeyRef": "- name: POSTGRES_PASSWORD",
    "prose": "its password comes from a Secret reference",
    "prose with a colon": "No password: the NetworkPolicy below lets only the llm-config pods connect.",
    "sha512 integrity": '"integrity": "sha512-' + "A" * 86 + '=="',
    "empty value": "password:",
    "kubectl from-file": "kubectl create secret generic pg --from-file=password=pg.pass",
}


def test_assembled_fixtures_have_the_intended_shape() -> None:
    assert len(_B64_KEY) == 44 and _B64_KEY.endswith("=")


@pytest.mark.parametrize("name", sorted(CAUGHT))
def test_scanner_catches(name: str) -> None:
    assert scan_text(CAUGHT[name]), f"scanner missed: {name}"


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_scanner_allows_references(name: str) -> None:
    assert not scan_text(ALLOWED[name]), f"false positive: {name}: {scan_text(ALLOWED[name])}"


def test_scanner_reports_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "values.yaml"
    path.write_text("a: 1\n" + CAUGHT["password literal (yaml)"] + "\n")
    assert [(f.line, f.kind) for f in scan_text(path.read_text(), "values.yaml")] == [(2, "password literal")]
