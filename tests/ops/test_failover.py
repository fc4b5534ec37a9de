"""deploy/compose as real processes on this machine: kill one replica under load (issue 12, part 2).

No container runtime runs here, so the compose topology runs as processes, configured by the compose
files themselves: each process gets the `environment:` of its service in deploy/compose/compose.yaml,
with only the addresses rewritten for one machine (service names -> 127.0.0.1 and free ports), and
HAProxy (Debian's) runs THE SAME deploy/compose/haproxy.cfg, its addresses and check timings set
through the environment variables the cfg reads. The secrets come from deploy/compose/init-secrets.sh.

* `test_replica_failover_under_load`: PostgreSQL (a private schema of the machine's server), Redis
  (127.0.0.1:6379, a unique key prefix), `serve --no-upgrade` refusing an unmigrated store, the
  `migrate` service's `llm-config upgrade`, three `serve --no-upgrade` replicas started together that
  bootstrap exactly one admin key into the shared file, HAProxy in front. Writers PUT distinct keys and
  readers GET acknowledged ones through HAProxy; one replica's whole process group gets SIGKILL
  mid-load. Then: every acknowledged write reads back with its value, HAProxy marked the dead replica
  DOWN within its check budget and routed around it (no failure after that), the only failures were
  writes that reached the replica as it died (in flight at the kill or sent within milliseconds of it;
  at most two per writer thread; never a read - HAProxy retries those elsewhere), the survivors logged
  no traceback, and the replica, restarted, is UP and served again. A backup with the replicas'
  environment (`llm-config backup`, the README's command) works afterwards.
* `test_database_password_reaches_libpq_only_through_pgpassfile`: the machine's PostgreSQL trusts
  127.0.0.1, which would prove nothing about passwords, so this one starts a private PostgreSQL cluster
  with scram-sha-256 (initdb), creates the `llmconfig` role from init-secrets.sh's postgres-password
  (what the postgres image does with POSTGRES_PASSWORD_FILE), and shows `upgrade` and
  `serve --no-upgrade` get in with PGPASSFILE=pgpass and the password-less URL from compose.yaml, and
  fail cleanly (one line, no password shown) without it or with a wrong one. On that replica it then
  walks README.md's master-key rotation runbook (keyring files old,new -> rotate-key -> new,old ->
  rotate-key -> new alone, restarting the replica each time) and reads a secret back at every step.

Numbers are printed with `-s`. Skipped when haproxy, PostgreSQL or Redis is missing, failed instead
with LLM_CONFIG_REQUIRE_SERVICES=1 (CI).
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import os
import pwd
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import REQUIRE_SERVICES, require_service
from tests.databases import private_database
from tests.e2e.test_replicas import Replica, free_port, stop_replicas, wait_for
from tests.e2e.test_replicas import _wait_ready as wait_ready

pytestmark = [pytest.mark.ops, pytest.mark.xdist_group("replicas")]

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
HAPROXY_CFG = COMPOSE_DIR / "haproxy.cfg"
INIT_SECRETS = COMPOSE_DIR / "init-secrets.sh"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
ENV = "production"

# HAProxy check timings for the test (the cfg's defaults are for production: 2s, fall 2, rise 2)
CHECK_INTER = os.environ.get("LLM_CONFIG_FAILOVER_CHECK_INTER", "500ms")
CHECK_FALL = os.environ.get("LLM_CONFIG_FAILOVER_CHECK_FALL", "2")
CHECK_RISE = os.environ.get("LLM_CONFIG_FAILOVER_CHECK_RISE", "2")
WRITERS, READERS = 4, 2
WARM_SECONDS, DOWN_SECONDS, AFTER_RETURN_SECONDS = 3.0, 4.0, 2.0
READ_AFTER = 0.5  # readers pick keys acknowledged at least this long ago
DYING_SECONDS = 1.0  # a request sent this long after the kill may still meet the dying replica (seen: <= 35 ms)


def fail_or_skip(message: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(message + " (LLM_CONFIG_REQUIRE_SERVICES=1)")
    pytest.skip(message)


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None)
    if not found:
        fail_or_skip("haproxy is not installed (apt-get install haproxy)")
    return str(found)


def llm_config() -> list[str]:
    """.venv's `llm-config` console script (the image's ENTRYPOINT)."""
    script = Path(sys.executable).with_name("llm-config")
    return [str(script)] if script.exists() else [sys.executable, "-m", "llm_config.cli.main"]


def compose_service(name: str) -> dict[str, object]:
    services: dict[str, dict[str, object]] = yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())["services"]
    return services[name]


def service_env(name: str, home: Path, **overrides: str) -> dict[str, str]:
    """The service's compose `environment:` with `overrides` (each must exist there: only addresses and
    paths are rewritten for one machine) on a clean process environment (no LLM_CONFIG_*, no PG*, HOME
    private so no ~/.pgpass helps)."""
    compose = {k: str(v) for k, v in dict(compose_service(name).get("environment") or {}).items()}
    missing = set(overrides) - set(compose)
    assert not missing, f"compose.yaml's {name} does not set {missing}"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_CONFIG_", "PG"))}
    return {**base, "HOME": str(home), **compose, **overrides}


def command_of(name: str) -> list[str]:
    return [str(arg) for arg in compose_service(name)["command"]]  # type: ignore[attr-defined]


def run(cmd: Sequence[str], env: Mapping[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), env=dict(env), capture_output=True, text=True, timeout=timeout, check=False)


def init_secrets(directory: Path) -> Path:
    if not shutil.which("openssl"):
        fail_or_skip("openssl is not installed")
    # the files go to the user the replicas run as: uid 10001 in compose, this test's own user here (a key
    # file must belong to the user who reads it, or to root)
    done = run(["sh", str(INIT_SECRETS), str(directory)],
               {**os.environ, "LLM_CONFIG_SECRETS_OWNER": f"{os.geteuid()}:{os.getegid()}"})
    assert done.returncode == 0, done.stderr
    return directory


def start_replica(name: str, port: int, env: Mapping[str, str], log_dir: Path) -> Replica:
    log = log_dir / f"{name}-{port}-{time.monotonic_ns()}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen([*llm_config(), *command_of(name)], env={**env, "LLM_CONFIG_PORT": str(port)},
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    return Replica(name, f"http://127.0.0.1:{port}", proc, log)


def kill_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


# ----------------------------------------------------------------------------- HAProxy


@dataclass
class Balancer:
    proc: subprocess.Popen[bytes]
    url: str
    stats_url: str
    log: Path

    def servers(self) -> dict[str, dict[str, str]]:
        """The backend's servers from HAProxy's CSV stats: name -> row (status, stot, ...)."""
        text = httpx.get(f"{self.stats_url};csv", timeout=2).text.lstrip("# ")
        return {row["svname"]: row for row in csv.DictReader(io.StringIO(text))
                if row["pxname"] == "api_replicas" and row["svname"] not in ("FRONTEND", "BACKEND")}

    def status(self, server: str) -> str:
        return self.servers()[server]["status"].split()[0]  # "UP", "DOWN", "UP 1/2", "no check"...

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@contextlib.contextmanager
def haproxy(addresses: Mapping[str, str], log_dir: Path) -> Iterator[Balancer]:
    """Debian's haproxy on deploy/compose/haproxy.cfg, configured through the cfg's variables only."""
    binary = haproxy_binary()
    listen, stats = free_port(), free_port()
    compose = {k: str(v) for k, v in dict(compose_service("haproxy")["environment"]).items()}  # type: ignore[call-overload]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **compose,
           "LISTEN_ADDR": f"127.0.0.1:{listen}", "STATS_ADDR": f"127.0.0.1:{stats}",
           "CHECK_INTER": CHECK_INTER, "CHECK_FALL": CHECK_FALL, "CHECK_RISE": CHECK_RISE,
           **{f"{name.upper().replace('-', '_')}_ADDR": addr for name, addr in addresses.items()}}
    assert set(env) - set(os.environ) - {"PATH"} <= set(compose)
    checked = run([binary, "-dW", "-c", "-f", str(HAPROXY_CFG)], env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    log = log_dir / "haproxy.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen([binary, "-db", "-f", str(HAPROXY_CFG)], env=env, stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True)
    balancer = Balancer(proc, f"http://127.0.0.1:{listen}", f"http://127.0.0.1:{stats}/stats", log)
    try:
        def all_up() -> bool:
            assert proc.poll() is None, log.read_text(errors="replace")
            try:
                return all(balancer.status(name) == "UP" for name in addresses)
            except httpx.HTTPError:
                return False

        assert wait_for(all_up, 20, 0.05), f"backends not UP: {balancer.servers()}"
        yield balancer
    finally:
        balancer.stop()


# ----------------------------------------------------------------------------- load


@dataclass(frozen=True, slots=True)
class Outcome:
    thread: str
    method: str
    key: str
    started: float
    ended: float
    status: int | None  # None: no HTTP answer at all
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Load:
    url: str
    token: str
    ns: str
    stop: threading.Event = field(default_factory=threading.Event)
    outcomes: list[Outcome] = field(default_factory=list)
    acked: dict[str, tuple[str, float]] = field(default_factory=dict)  # key -> (value, acknowledged at)
    mismatches: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=15)

    def record(self, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes.append(outcome)

    def writer(self, i: int) -> None:
        name = f"writer-{i}"
        with self.client() as http:
            n = 0
            while not self.stop.is_set():
                key, value = f"w{i}-{n}", f"{secrets.token_hex(6)}-{i}-{n}"
                n += 1
                started = time.monotonic()
                try:
                    got = http.put(f"/api/v1/configs/{self.ns}/{key}", json={"value": value, "env": ENV})
                except httpx.HTTPError as exc:
                    self.record(Outcome(name, "PUT", key, started, time.monotonic(), None, repr(exc)))
                    continue
                ended = time.monotonic()
                self.record(Outcome(name, "PUT", key, started, ended, got.status_code,
                                    "" if got.is_success else got.text[:200]))
                if got.is_success:
                    with self.lock:
                        self.acked[key] = (value, ended)

    def reader(self, i: int) -> None:
        name = f"reader-{i}"
        rng = random.Random(i)
        with self.client() as http:
            while not self.stop.is_set():
                now = time.monotonic()
                with self.lock:
                    ready = [(k, v) for k, (v, at) in list(self.acked.items())[-500:] if now - at >= READ_AFTER]
                if not ready:
                    time.sleep(0.01)
                    continue
                key, value = rng.choice(ready)
                started = time.monotonic()
                try:
                    got = http.get(f"/api/v1/configs/{self.ns}/{key}", params={"env": ENV})
                except httpx.HTTPError as exc:
                    self.record(Outcome(name, "GET", key, started, time.monotonic(), None, repr(exc)))
                    continue
                self.record(Outcome(name, "GET", key, started, time.monotonic(), got.status_code,
                                    "" if got.is_success else got.text[:200]))
                if got.is_success and got.json().get("value") != value:
                    with self.lock:
                        self.mismatches.append(f"{key}: acknowledged {value!r}, read {got.json().get('value')!r}")


@dataclass
class StatusLog:
    """HAProxy's view of one server over time (polled every 20 ms)."""

    samples: list[tuple[float, str, int]] = field(default_factory=list)  # (time, status, stot)

    def first(self, status: str, after: float) -> float | None:
        return next((t for t, s, _ in self.samples if t >= after and s == status), None)


def watch_server(balancer: Balancer, server: str, stop: threading.Event, out: StatusLog) -> None:
    while not stop.is_set():
        with contextlib.suppress(httpx.HTTPError, KeyError):
            row = balancer.servers()[server]
            out.samples.append((time.monotonic(), row["status"].split()[0], int(row["stot"] or 0)))
        time.sleep(0.02)


# ----------------------------------------------------------------------------- the failover run


def test_replica_failover_under_load(tmp_path: Path) -> None:
    haproxy_binary()
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    secret_dir = init_secrets(tmp_path / "secrets")
    logs = tmp_path / "logs"
    logs.mkdir()
    admin_file = tmp_path / "data" / "admin" / "admin-api-key"  # the shared llm-config-data volume
    with private_database("postgresql") as database:
        store = database.url
        migrate_env = service_env("migrate", tmp_path, LLM_CONFIG_STORAGE=store,
                                  PGPASSFILE=str(secret_dir / "pgpass"))
        api_env = service_env(
            "api-1", tmp_path,
            LLM_CONFIG_STORAGE=store, PGPASSFILE=str(secret_dir / "pgpass"),
            LLM_CONFIG_HOST="127.0.0.1",  # 0.0.0.0 in a container; one machine needs no more than loopback
            LLM_CONFIG_REDIS_URL=f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
            LLM_CONFIG_KEY_FILE=str(secret_dir / "master.key"),
            LLM_CONFIG_TRUSTED_PROXY="127.0.0.1/32",  # where HAProxy connects from here
            LLM_CONFIG_BOOTSTRAP_ADMIN_KEY_FILE=str(admin_file),
        )
        # test-only, not in compose.yaml: one API key drives the whole load (the default per-key limit,
        # 100/s shared by the replicas through Redis, would answer 429), and a Redis prefix of its own
        api_env |= {"LLM_CONFIG_RATE_LIMIT_KEY": "0", "LLM_CONFIG_REDIS_PREFIX": f"failover-{secrets.token_hex(4)}:"}

        # compose's order matters: a replica on `serve --no-upgrade` refuses a store `migrate` has not upgraded
        early = start_replica("api-1", free_port(), api_env, logs)
        try:
            assert early.proc.wait(timeout=60) != 0
        finally:
            stop_replicas([early])
        assert "upgrade" in early.log.read_text(errors="replace")
        assert "Traceback" not in early.log.read_text(errors="replace")

        migrated = run([*llm_config(), *command_of("migrate")], migrate_env)
        assert migrated.returncode == 0, migrated.stderr
        assert "applied migration" in migrated.stdout
        again = run([*llm_config(), *command_of("migrate")], migrate_env)
        assert again.returncode == 0 and "up to date" in again.stdout, again.stdout + again.stderr

        names = ("api-1", "api-2", "api-3")
        ports = {name: free_port() for name in names}
        replicas = {name: start_replica(name, ports[name], api_env, logs) for name in names}
        balancer_ctx: contextlib.AbstractContextManager[Balancer] | None = None
        try:
            deadline = time.monotonic() + 60
            for replica in replicas.values():
                wait_ready(replica, deadline)
            # three replicas started together, one admin key between them, written 0600 to the shared file
            assert admin_file.exists(), [r.log.read_text(errors="replace")[-2000:] for r in replicas.values()]
            assert admin_file.stat().st_mode & 0o777 == 0o600
            token = admin_file.read_text().strip()

            balancer_ctx = haproxy({name: f"127.0.0.1:{ports[name]}" for name in names}, logs)
            balancer = balancer_ctx.__enter__()
            with httpx.Client(base_url=balancer.url, headers={"Authorization": f"Bearer {token}"}) as http:
                listed = http.get("/api/v1/keys")
                assert listed.status_code == 200, listed.text
                assert [k["role"] for k in listed.json()] == ["admin"], listed.json()

            result = run_failover(balancer, replicas, ports, api_env, logs, token)

            # a backup with the replicas' own environment (README: docker compose exec api-1 llm-config backup)
            backup = tmp_path / "data" / "backups" / "llm-config.backup"
            backup.parent.mkdir(parents=True)
            done = run([*llm_config(), "backup", str(backup)], api_env, timeout=120)
            assert done.returncode == 0, done.stderr
            assert backup.stat().st_size > 0
            result.check()
        finally:
            if balancer_ctx is not None:
                balancer_ctx.__exit__(None, None, None)
            stop_replicas(list(replicas.values()))


@dataclass
class FailoverResult:
    load: Load
    killed_at: float
    down_at: float | None
    up_at: float | None
    stot_at_up: int
    stot_at_end: int
    survivors: list[Replica]
    readback: dict[str, str | None]
    unacked_applied: int
    unacked: int

    def check(self) -> None:
        load = self.load
        outcomes = load.outcomes
        failures = [o for o in outcomes if not o.ok]
        puts = [o for o in outcomes if o.method == "PUT"]
        gets = [o for o in outcomes if o.method == "GET"]
        detect = None if self.down_at is None else self.down_at - self.killed_at
        returned = None if self.up_at is None else self.stot_at_end - self.stot_at_up
        in_flight = [o for o in failures if o.started <= self.killed_at <= o.ended]
        print(f"\nfailover: {len(outcomes)} requests through HAProxy ({len(puts)} PUT, {len(gets)} GET), "
              f"{len(load.acked)} acknowledged writes, {len(failures)} failed "
              f"({len(in_flight)} in flight at the kill): "
              f"{[(o.method, o.status, round(o.started - self.killed_at, 3), o.detail[:80]) for o in failures]}; "
              f"kill -> DOWN in HAProxy {detect if detect is None else round(detect, 3)} s "
              f"(inter {CHECK_INTER}, fall {CHECK_FALL}); back UP, then {returned} requests to it; "
              f"{self.unacked} unacknowledged writes, {self.unacked_applied} of them applied anyway")

        assert len(load.acked) >= 100, "too little load to prove anything"
        lost = {k: (v, self.readback.get(k)) for k, (v, _) in load.acked.items() if self.readback.get(k) != v}
        assert not lost, f"{len(lost)} acknowledged writes lost or changed: {list(lost.items())[:10]}"
        assert not load.mismatches, load.mismatches[:10]
        assert self.down_at is not None, "HAProxy never marked the killed replica DOWN"
        # fall x inter, plus one interval for the check that was in progress and some slack for a busy box
        inter = float(CHECK_INTER.removesuffix("ms")) / 1000 if CHECK_INTER.endswith("ms") else float(
            CHECK_INTER.removesuffix("s"))
        assert detect is not None and detect <= inter * (int(CHECK_FALL) + 1) + 2.0
        # routed around: nothing fails once HAProxy knows (and retries cover most of the time before)
        late = [o for o in failures if o.started > self.down_at]
        assert not late, f"requests failed after the replica was marked DOWN: {late[:5]}"
        # only requests that had reached the dying replica may fail: a write can't be retried safely (it may
        # have been applied - unacked_applied counts those that were), reads are retried by HAProxy. Per
        # writer thread: the one in flight at the kill, plus one sent in the milliseconds while the
        # replica's processes were dying (a connection already accepted, or pooled, then closed).
        assert all(o.method == "PUT" for o in failures), failures
        assert len(failures) <= 2 * WRITERS, failures
        assert all(o.ended >= self.killed_at - 0.05 and o.started <= self.killed_at + DYING_SECONDS
                   for o in failures), failures
        assert self.up_at is not None, "the restarted replica never came back UP"
        assert returned is not None and returned > 0, "HAProxy did not route to the restarted replica"
        for replica in self.survivors:
            text = replica.tracebacks()
            assert not text, f"{replica.name} logged a traceback:\n{text[-4000:]}"


def run_failover(balancer: Balancer, replicas: dict[str, Replica], ports: Mapping[str, int],
                 api_env: Mapping[str, str], logs: Path, token: str) -> FailoverResult:
    victim = "api-2"
    load = Load(balancer.url, token, f"failover{secrets.token_hex(3)}")
    watch_stop = threading.Event()
    status = StatusLog()
    threads = [threading.Thread(target=load.writer, args=(i,), daemon=True) for i in range(WRITERS)]
    threads += [threading.Thread(target=load.reader, args=(i,), daemon=True) for i in range(READERS)]
    watcher = threading.Thread(target=watch_server, args=(balancer, victim, watch_stop, status), daemon=True)
    watcher.start()
    for thread in threads:
        thread.start()
    try:
        time.sleep(WARM_SECONDS)
        killed_at = time.monotonic()
        kill_group(replicas[victim].proc, signal.SIGKILL)  # the whole container: parent and workers
        replicas[victim].proc.wait(timeout=10)
        wait_for(lambda: status.first("DOWN", killed_at) is not None, 15, 0.02)
        down_at = status.first("DOWN", killed_at)
        time.sleep(max(0.0, killed_at + DOWN_SECONDS - time.monotonic()))
        returned_at = time.monotonic()
        replicas[victim] = start_replica(victim, ports[victim], api_env, logs)
        wait_ready(replicas[victim], time.monotonic() + 60)
        wait_for(lambda: status.first("UP", returned_at) is not None, 15, 0.02)
        up_at = status.first("UP", returned_at)
        stot_at_up = next((stot for t, _, stot in status.samples if up_at is not None and t >= up_at), 0)
        time.sleep(AFTER_RETURN_SECONDS)
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(timeout=30)
        watch_stop.set()
        watcher.join(timeout=5)
    stot_at_end = int(balancer.servers()[victim]["stot"] or 0)

    # read everything back through the balancer: one listing of the namespace, then the values
    with load.client() as http:
        listing = http.get(f"/api/v1/configs/{load.ns}", params={"env": ENV})
        assert listing.status_code == 200, listing.text
        readback = {item["key"]: item.get("value") for item in listing.json()}
        sample = random.sample(sorted(load.acked), min(200, len(load.acked)))
        for key in sample:  # and key by key for a sample, as a client would
            got = http.get(f"/api/v1/configs/{load.ns}/{key}", params={"env": ENV})
            assert got.status_code == 200 and got.json()["value"] == load.acked[key][0], (key, got.text)
    unacked = {o.key for o in load.outcomes if o.method == "PUT" and not o.ok}
    return FailoverResult(load, killed_at, down_at, up_at, stot_at_up, stot_at_end,
                          [r for name, r in replicas.items()], readback,
                          sum(1 for k in unacked if k in readback), len(unacked))


# ----------------------------------------------------------------------------- PGPASSFILE, for real


@dataclass
class Cluster:
    port: int
    socket_dir: Path
    proc: subprocess.Popen[bytes]


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found and shutil.which("initdb"):
        found = [str(shutil.which("initdb"))]
    if not found:
        fail_or_skip("PostgreSQL server binaries (initdb) are not installed")
    return Path(found[-1]).parent


@contextlib.contextmanager
def scram_cluster() -> Iterator[Cluster]:
    """A throw-away PostgreSQL cluster that demands scram-sha-256 passwords over TCP (as the postgres
    image does when POSTGRES_PASSWORD(_FILE) is set); as root it runs as the `postgres` user."""
    bindir = _pg_bin()
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            fail_or_skip("no 'postgres' user to run a private PostgreSQL cluster as")
        as_user = ["runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="llmc-pg-"))
    try:
        if as_user:
            os.chown(base, owner.pw_uid, owner.pw_gid)
        done = run([*as_user, str(bindir / "initdb"), "-D", str(base / "data"), "-U", "postgres", "-E", "UTF8",
                    "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"], os.environ, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        port = free_port()
        with (base / "server.log").open("wb") as sink:
            proc = subprocess.Popen([*as_user, str(bindir / "postgres"), "-D", str(base / "data"), "-p", str(port),
                                     "-k", str(base), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                                    stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        cluster = Cluster(port, base, proc)
        try:
            import psycopg

            def accepting() -> bool:
                assert proc.poll() is None, (base / "server.log").read_text(errors="replace")
                try:
                    psycopg.connect(host=str(base), port=port, user="postgres", dbname="postgres").close()
                    return True
                except psycopg.OperationalError:
                    return False

            assert wait_for(accepting, 30, 0.1)
            yield cluster
        finally:
            kill_group(proc, signal.SIGINT)  # fast shutdown
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                kill_group(proc, signal.SIGKILL)
                proc.wait(timeout=10)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_database_password_reaches_libpq_only_through_pgpassfile(tmp_path: Path) -> None:
    secret_dir = init_secrets(tmp_path / "secrets")
    password = (secret_dir / "postgres-password").read_text()
    compose_url = str(dict(compose_service("migrate")["environment"])["LLM_CONFIG_STORAGE"])  # type: ignore[call-overload]
    assert compose_url == "postgresql://llmconfig@postgres:5432/llmconfig"  # no password in it
    with scram_cluster() as cluster:
        import psycopg

        # what the postgres image does at first start with POSTGRES_USER/_DB and POSTGRES_PASSWORD_FILE
        with psycopg.connect(host=str(cluster.socket_dir), port=cluster.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f"CREATE ROLE llmconfig LOGIN PASSWORD '{password}'")
            conn.execute("CREATE DATABASE llmconfig OWNER llmconfig")
        store = compose_url.replace("@postgres:5432/", f"@127.0.0.1:{cluster.port}/")
        pgpass = str(secret_dir / "pgpass")
        empty_home = tmp_path / "home"
        empty_home.mkdir()

        # without the password file: refused by the server, one clean line, exit 1
        no_file = service_env("migrate", empty_home, LLM_CONFIG_STORAGE=store, PGPASSFILE=str(tmp_path / "none"))
        refused = run([*llm_config(), *command_of("migrate")], no_file)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "password" in refused.stderr.lower() and "Traceback" not in refused.stderr
        # with a wrong password in it: refused too, and the password is never echoed
        wrong = tmp_path / "wrong-pgpass"
        wrong.write_text(f"*:*:llmconfig:llmconfig:{'0' * 64}\n")
        wrong.chmod(0o600)
        denied = run([*llm_config(), *command_of("migrate")], {**no_file, "PGPASSFILE": str(wrong)})
        assert denied.returncode == 1 and "Traceback" not in denied.stderr, denied.stderr
        assert "0" * 64 not in denied.stderr + denied.stdout

        # compose's way: the password-less URL plus PGPASSFILE
        migrate_env = service_env("migrate", empty_home, LLM_CONFIG_STORAGE=store, PGPASSFILE=pgpass)
        migrated = run([*llm_config(), *command_of("migrate")], migrate_env)
        assert migrated.returncode == 0, migrated.stderr
        assert "applied migration" in migrated.stdout and password not in migrated.stdout + migrated.stderr

        admin_file = tmp_path / "data" / "admin" / "admin-api-key"
        api_env = service_env("api-1", empty_home, LLM_CONFIG_STORAGE=store, PGPASSFILE=pgpass,
                              LLM_CONFIG_HOST="127.0.0.1", LLM_CONFIG_KEY_FILE=str(secret_dir / "master.key"),
                              LLM_CONFIG_REDIS_URL=f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
                              LLM_CONFIG_BOOTSTRAP_ADMIN_KEY_FILE=str(admin_file))
        if not _redis_up():
            api_env.pop("LLM_CONFIG_REDIS_URL")  # this test is about PostgreSQL: Redis is optional here
        port = free_port()
        replica = start_replica("api-1", port, api_env, tmp_path)
        logs = [replica.log]
        try:
            wait_ready(replica, time.monotonic() + 60)
            token = admin_file.read_text().strip()

            def read_secret() -> None:
                with httpx.Client(base_url=replica.url, headers={"Authorization": f"Bearer {token}"}) as http:
                    got = http.get("/api/v1/configs/acme/openai.api_key", params={"env": ENV, "reveal": "true"})
                    assert got.status_code == 200 and got.json()["value"] == "sk-canary", got.text

            def restart() -> None:  # docker compose up -d --no-deps --force-recreate api-1
                nonlocal replica
                stop_replicas([replica])
                replica = start_replica("api-1", port, api_env, tmp_path)
                logs.append(replica.log)
                wait_ready(replica, time.monotonic() + 60)

            def sh(script: str) -> None:  # README.md's commands, run in deploy/compose (secrets/ here)
                done = run(["sh", "-euc", script], {**os.environ}, timeout=30)
                assert done.returncode == 0, done.stderr

            def rotate() -> None:  # docker compose run --rm --no-deps -v ...new:/run/secrets/new-key api-1 rotate-key
                done = run([*llm_config(), "rotate-key", "--new-key-file", str(secret_dir / "master.key.new")],
                           api_env, timeout=120)
                assert done.returncode == 0, done.stdout + done.stderr

            with httpx.Client(base_url=replica.url, headers={"Authorization": f"Bearer {token}"}) as http:
                put = http.put("/api/v1/configs/acme/openai.api_key", json={"value": "sk-canary", "env": ENV,
                                                                            "secret": True})
                assert put.status_code == 200, put.text
            read_secret()

            # README.md, "Rotating the master key", with the replica restarted where compose re-creates it
            # compose: `chown 10001:10001`, the replicas' user; here the replicas run as this test's user
            chown = f"chown {os.geteuid()}:{os.getegid()} secrets/master.key.new"
            cd = f"cd {secret_dir.parent}"
            sh(f"{cd}; (umask 077; openssl rand -base64 32 > secrets/master.key.new); {chown}; "
               "cp -p secrets/master.key secrets/master.key.old")
            sh(f"""{cd}; printf '%s,%s\\n' "$(cat secrets/master.key.old)" "$(cat secrets/master.key.new)" """
               "> secrets/master.key")
            restart()
            read_secret()
            rotate()
            sh(f"""{cd}; printf '%s,%s\\n' "$(cat secrets/master.key.new)" "$(cat secrets/master.key.old)" """
               "> secrets/master.key")
            restart()
            read_secret()
            rotate()
            sh(f"{cd}; cp secrets/master.key.new secrets/master.key")
            restart()
            read_secret()  # the new key alone opens everything
            key_file = secret_dir / "master.key"
            assert key_file.stat().st_mode & 0o777 == 0o600 and "," not in key_file.read_text()
        finally:
            stop_replicas([replica])
        for path in logs:
            log = path.read_text(errors="replace")
            assert "Traceback" not in log and password not in log, log[-3000:]


def _redis_up() -> bool:
    from tests.conftest import service_available

    return service_available(REDIS_HOST, REDIS_PORT)
