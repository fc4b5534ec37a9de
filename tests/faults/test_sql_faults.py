"""PostgreSQL and MariaDB dying under llm-config (ARCHITECTURE decision 9): private servers only.

A private PostgreSQL 15 cluster (`pg_createcluster` on a free port: plain `initdb` refuses to run as
root, and CI runs as root) and a private `mariadbd` with its own data directory serve the whole module;
every test works in databases of its own on them, and both are removed at the end even when a test
fails. The shared servers on 5432/3306 are never touched.

The promises checked, as a user sees them:

* The database dies under a live API server taking concurrent PUTs and GETs — PostgreSQL stopped with
  `-m immediate`, MariaDB killed with SIGKILL — and comes back on the same port. While it is down every
  request is a quick 503 with `Retry-After` (never a 500, never a hang) and `/health/live` answers at
  once; once it is back the same server (not restarted) acknowledges writes again by itself; every
  acknowledged write is in the history with the version and value it was acknowledged with, versions
  are contiguous, nothing is applied twice, and the audit chain verifies.
* MariaDB killed with SIGKILL in the middle of a store's first migration: the next open completes it
  (no migration pending, every table there, a store that takes writes and verifies) — from partial
  states built by hand, and from `ConfigManager.open` in a subprocess killed at random moments.
* A wrong password, or a port where nothing listens: `llm-config get` exits 1 with one line on stderr
  that never shows the password (the right password, same user and database, works).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pymysql
import pytest

from llm_config.core.apikeys import AUTH_CACHE_SECONDS
from llm_config.core.manager import ConfigManager
from llm_config.crypto.keys import generate_key
from llm_config.storage.base import open_storage
from llm_config.storage.migrate import MYSQL, load_migrations
from tests.conftest import REQUIRE_SERVICES
from tests.e2e.conftest import serve_in_thread, server_options

pytestmark = pytest.mark.faults

PG_VERSION = "15"
PG_POSTGRES = Path(f"/usr/lib/postgresql/{PG_VERSION}/bin/postgres")
PG_TOOLS = ("pg_createcluster", "pg_ctlcluster", "pg_dropcluster")
PG_PREFIX = "lcmfault"
MARIADBD = Path("/usr/sbin/mariadbd")
INSTALL_DB = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
CLI = Path(sys.executable).with_name("llm-config")

PASSWORD = "hunter2-secret"  # a wrong password that must never be shown
RIGHT_PASSWORD = "right-Pass-42"
PW_USER = "lcm_pw"

MAX_REQUEST_SECONDS = 6.0  # with the database down: one connect timeout (5 s) at most, never a queue of waits
RECOVERY_SECONDS = 15.0  # from "the database accepts connections again" to the first acknowledged PUT
PG_DOWN_SECONDS = 12.0  # longer than the PostgreSQL pool's 10 s wait for a connection (postgres.py)
MARIA_DOWN_SECONDS = 3.0
WRITERS = 8
READERS = 2
PROBE_GAP = 0.1
LIVE_SECONDS = 2.0  # /health/live does no I/O: anything slower means the event loop is blocked
LIVE_DOWN_SECONDS = 3.0
NS = "faults"
KEYS = ("k0", "k1", "k2")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _unavailable(message: str) -> None:
    """Skip — or with LLM_CONFIG_REQUIRE_SERVICES=1 (CI) fail: a private server cannot be made here."""
    if REQUIRE_SERVICES:
        pytest.fail(message + " (LLM_CONFIG_REQUIRE_SERVICES=1)")
    pytest.skip(message)


def _run(*argv: str, timeout: float = 60) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stdout[-1500:]}{done.stderr[-1500:]}")
    return done.stdout


def _running(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (a daemon's parent may never reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _new_name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


# ----------------------------------------------------------------------------- a private PostgreSQL


class PrivatePostgres:
    """A PostgreSQL cluster of this module: trust for everyone on 127.0.0.1 except `PW_USER`, who needs
    a password; stop -m immediate, start, drop."""

    def __init__(self) -> None:
        self.name = f"{PG_PREFIX}_{os.getpid()}_{secrets.token_hex(3)}"
        self.port = _free_port()
        self.created = False

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str, user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def create(self) -> None:
        self.created = True
        _run("pg_createcluster", PG_VERSION, self.name, "-p", str(self.port),
             "-o", "max_connections=200", "--", "--auth=trust")
        hba = Path(f"/etc/postgresql/{PG_VERSION}/{self.name}/pg_hba.conf")
        hba.write_text(f"host all {PW_USER} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        self.start()
        self.execute(f"CREATE ROLE {PW_USER} LOGIN PASSWORD '{RIGHT_PASSWORD}'")

    def start(self) -> None:
        _run("pg_ctlcluster", PG_VERSION, self.name, "start")
        deadline = time.monotonic() + 20
        while True:
            try:
                self.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop_immediate(self) -> None:
        """What `pg_ctlcluster stop -m immediate` does — SIGQUIT to the postmaster, which kills every
        backend at once without a checkpoint, then wait for it to be gone — minus the wrapper's start-up
        time, so a request sent just before is still within the principal cache when the server dies."""
        pid = int(Path(f"/var/lib/postgresql/{PG_VERSION}/{self.name}/postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + 20
        while _running(pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"postmaster {pid} still running 20 s after SIGQUIT")
            time.sleep(0.005)

    def drop(self) -> None:
        if self.created and Path(f"/etc/postgresql/{PG_VERSION}/{self.name}").exists():
            _run("pg_dropcluster", "--stop", PG_VERSION, self.name)
        self.created = False

    def execute(self, sql: str) -> list[Any]:
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(sql.encode())
            return cur.fetchall() if cur.description else []

    def new_database(self) -> str:
        name = _new_name("t")
        self.execute(f'CREATE DATABASE "{name}" OWNER {PW_USER}')  # PG 15: the owner may create in public
        return name


def _drop_stale_clusters() -> None:
    """Clusters a killed run of this module left behind (their pytest process is gone)."""
    with contextlib.suppress(OSError):
        for entry in Path(f"/etc/postgresql/{PG_VERSION}").iterdir():
            parts = entry.name.split("_")
            if len(parts) != 3 or parts[0] != PG_PREFIX or not parts[1].isdigit():
                continue
            try:
                os.kill(int(parts[1]), 0)
            except ProcessLookupError:
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    _run("pg_dropcluster", "--stop", PG_VERSION, entry.name)
            except PermissionError:
                continue


@pytest.fixture(scope="module")
def pg() -> Iterator[PrivatePostgres]:
    if not PG_POSTGRES.exists() or not all(shutil.which(tool) for tool in PG_TOOLS):
        _unavailable(f"PostgreSQL {PG_VERSION} with postgresql-common is not installed ({PG_POSTGRES}, "
                     f"{', '.join(PG_TOOLS)})")
    if os.geteuid() != 0:
        _unavailable("pg_createcluster needs root (it writes /etc/postgresql)")
    _drop_stale_clusters()
    cluster = PrivatePostgres()
    try:
        cluster.create()
        yield cluster
    finally:
        cluster.drop()


# ----------------------------------------------------------------------------- a private MariaDB


class PrivateMariaDB:
    """A `mariadbd` of this module with its own data directory: root without a password on 127.0.0.1
    (normal grants), kill -9, restart on the same port."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.datadir = base / "data"
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._runs = 0

    def url(self, database: str, user: str = "root") -> str:
        return f"mysql://{user}@127.0.0.1:{self.port}/{database}"

    def install(self) -> None:
        assert INSTALL_DB is not None
        _run(INSTALL_DB, "--no-defaults", f"--datadir={self.datadir}", "--user=root",
             "--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve",
             "--innodb-log-file-size=16M", timeout=120)

    def start(self) -> None:
        self._runs += 1
        log = self.base / f"mariadbd-{self._runs}.log"
        self.proc = subprocess.Popen(
            [str(MARIADBD), "--no-defaults", f"--datadir={self.datadir}", "--user=root", f"--port={self.port}",
             "--bind-address=127.0.0.1", f"--socket={self.base / 'mariadbd.sock'}",
             f"--pid-file={self.base / 'mariadbd.pid'}", f"--log-error={log}", "--skip-name-resolve",
             "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=16M", "--max-connections=300"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.execute("SELECT 1")
                return
            except pymysql.err.MySQLError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                    self.stop()
                    pytest.fail(f"private mariadbd did not start on port {self.port}: {text}")
                time.sleep(0.05)

    def kill9(self) -> None:
        proc, self.proc = self.proc, None
        assert proc is not None and proc.poll() is None, "mariadbd is not running"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.kill()  # its data directory goes next
        proc.wait(30)

    def connect(self, database: str | None = None, **kw: Any) -> Any:
        return pymysql.connect(host="127.0.0.1", port=self.port, user="root", database=database,
                               autocommit=True, connect_timeout=5, **kw)

    def execute(self, sql: str, database: str | None = None) -> list[Any]:
        conn = self.connect(database)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return list(cur.fetchall())
        finally:
            conn.close()

    def new_database(self) -> str:
        name = _new_name("t")
        self.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        return name

    def tables(self, database: str) -> set[str]:
        rows = self.execute(f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{database}'")
        return {str(row[0]) for row in rows}


@pytest.fixture(scope="module")
def maria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateMariaDB]:
    if not MARIADBD.exists() or INSTALL_DB is None:
        _unavailable(f"MariaDB is not installed ({MARIADBD}, mariadb-install-db)")
    base = tmp_path_factory.mktemp("mariadb")
    server = PrivateMariaDB(base)
    try:
        server.install()
        server.start()
        server.execute(f"CREATE USER '{PW_USER}'@'127.0.0.1' IDENTIFIED BY '{RIGHT_PASSWORD}'")
        server.execute(f"GRANT ALL ON *.* TO '{PW_USER}'@'127.0.0.1'")
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.datadir, ignore_errors=True)


# ----------------------------------------------------------------------------- a database restarted under load


@dataclass
class Attempt:
    """One request and what came back (status None: no HTTP answer at all)."""

    worker: int
    n: int
    key: str
    started: float
    elapsed: float
    status: int | None
    version: int | None
    retry_after: str | None
    body: str

    @property
    def value(self) -> dict[str, int]:
        return {"writer": self.worker, "n": self.n}

    @property
    def ended(self) -> float:
        return self.started + self.elapsed


@dataclass
class LoadRun:
    """Concurrent PUTs (and GETs) to one live API server while its database went down and came back."""

    url: str
    key: str
    writes: list[Attempt]
    reads: list[Attempt]
    down_from: float  # the database is gone (the stop or kill has returned)
    down_until: float  # its restart begins
    up_at: float  # it accepts connections again
    recovered: float | None  # the first acknowledged PUT sent after `up_at` (None: none in RECOVERY_SECONDS)
    stuck: int  # client threads still inside a request at the end


def _worker(url: str, token: str, i: int, write: bool, stop: threading.Event, out: list[Attempt]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(60, connect=5)) as client:
        n = 0
        while not stop.is_set():
            key = KEYS[(i + n) % len(KEYS)]
            path = f"/api/v1/configs/{NS}/{key}"
            started = time.monotonic()
            status = version = retry_after = None
            try:
                r = client.put(path, json={"value": {"writer": i, "n": n}}) if write else client.get(path)
                status, body, retry_after = r.status_code, r.text[:300], r.headers.get("retry-after")
                if status == 200:
                    version = int(r.json()["version"])
            except httpx.HTTPError as exc:
                body = repr(exc)
            out.append(Attempt(i, n, key, started, time.monotonic() - started, status, version, retry_after, body))
            n += 1
            if status != 200 or not write:
                time.sleep(0.05)  # a client that backs off a little, as Retry-After asks; readers poll


def _kick(client: httpx.Client, path: str, warmed: float, out: list[Attempt]) -> None:
    """GETs with a key authenticated at `warmed`, while the principal cache still holds it (the edge then
    answers on the event loop), until one is slow; several, as the manager looks at storage for foreign
    changes at most every few milliseconds, whichever thread comes first."""
    n = 0
    while time.monotonic() - warmed < AUTH_CACHE_SECONDS - 0.1:
        started = time.monotonic()
        status, body, retry_after = None, "", None
        try:
            r = client.get(path)
            status, body, retry_after = r.status_code, r.text[:300], r.headers.get("retry-after")
        except httpx.HTTPError as exc:
            body = repr(exc)
        out.append(Attempt(-2, n, path, started, time.monotonic() - started, status, None, retry_after, body))
        if time.monotonic() - started > LIVE_SECONDS:
            return
        n += 1
        time.sleep(0.02)


def _prober(url: str, stop: threading.Event, out: list[Attempt]) -> None:
    with httpx.Client(base_url=url, timeout=httpx.Timeout(60, connect=5)) as client:
        n = 0
        while not stop.is_set():
            started = time.monotonic()
            status, body = None, ""
            try:
                r = client.get("/health/live")
                status, body = r.status_code, r.text[:200]
            except httpx.HTTPError as exc:
                body = repr(exc)
            out.append(Attempt(-1, n, "", started, time.monotonic() - started, status, None, None, body))
            n += 1
            time.sleep(PROBE_GAP)


def _wait_for(predicate: Callable[[], bool], timeout: float) -> float | None:
    """When `predicate()` first held (polled), or None if not within `timeout` seconds."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            return None
        time.sleep(0.02)
    return time.monotonic()


def _restart_under_load(url: str, stop_db: Callable[[], None], start_db: Callable[[], None],
                        down_seconds: float) -> LoadRun:
    """WRITERS threads PUT (and READERS threads GET) through one API server, which stays up throughout,
    while `stop_db()`, `down_seconds` of nothing, `start_db()`; then load goes on until 20 more PUTs were
    acknowledged after the recovery."""
    key = generate_key()
    manager = ConfigManager.open(url, encryption_key=key, actor="tester")
    writes: list[Attempt] = []
    reads: list[Attempt] = []
    stop = threading.Event()
    workers: list[threading.Thread] = []
    thread = None

    def acked_since(moment: float) -> int:
        return sum(1 for a in list(writes) if a.status == 200 and a.started >= moment)

    try:
        thread, server = serve_in_thread(manager, server_options())
        workers = [threading.Thread(target=_worker, args=(server.url, server.admin_key, i, True, stop, writes),
                                    daemon=True) for i in range(WRITERS)]
        for worker in workers:
            worker.start()
        if _wait_for(lambda: acked_since(0) >= 30, 20) is None:
            pytest.fail(f"fewer than 30 PUTs acknowledged in 20 s before the fault: {_describe(writes)}")
        readers = [threading.Thread(target=_worker, args=(server.url, server.admin_key, i, False, stop, reads),
                                    daemon=True) for i in range(READERS)]
        for reader in readers:
            reader.start()
        workers += readers
        time.sleep(0.3)
        stop_db()
        down_from = time.monotonic()
        time.sleep(down_seconds)
        down_until = time.monotonic()
        start_db()
        up_at = time.monotonic()
        recovered = _wait_for(lambda: acked_since(up_at) >= 1, RECOVERY_SECONDS)
        if recovered is not None:
            _wait_for(lambda: acked_since(recovered) >= 20, 20)
    finally:
        stop.set()
        for worker in workers:
            worker.join(90)
        if thread is not None:
            thread.stop()
        manager.close()
    stuck = sum(worker.is_alive() for worker in workers)
    return LoadRun(url, key, writes, reads, down_from, down_until, up_at, recovered, stuck)


def _describe(attempts: list[Attempt], limit: int = 6) -> str:
    return "; ".join(f"#{a.worker}.{a.n} {a.status} after {a.elapsed:.2f} s: {a.body[:150]}" for a in attempts[:limit])


def _assert_quick_503s(run: LoadRun) -> None:
    """While the database is down: 503 with Retry-After (never a 500), answered quickly; reads may also be
    served from the cache (200)."""
    attempts = run.writes + run.reads
    assert not run.stuck, f"{run.stuck} client threads still inside a request after 90 s"
    unanswered = [a for a in attempts if a.status is None]
    assert not unanswered, f"requests without an HTTP answer: {_describe(unanswered)}"
    wrong = [a for a in attempts if a.status not in (200, 503)]
    assert not wrong, f"{len(wrong)} answers other than 200/503 around the outage: {_describe(wrong)}"
    no_retry = [a for a in attempts if a.status == 503 and not (a.retry_after or "").isdigit()]
    assert not no_retry, f"503 without Retry-After: {_describe(no_retry)}"
    assert all(int(a.retry_after or 0) >= 1 for a in attempts if a.status == 503)
    slow = sorted((a for a in attempts if a.elapsed > MAX_REQUEST_SECONDS), key=lambda a: -a.elapsed)
    assert not slow, (f"{len(slow)} requests took more than {MAX_REQUEST_SECONDS} s with the database down, "
                      f"slowest first: {_describe(slow)}")
    writes_down = [a for a in run.writes if a.started >= run.down_from and a.ended <= run.down_until]
    assert len(writes_down) >= WRITERS, f"only {len(writes_down)} PUTs were answered while the database was down"
    served = [a for a in writes_down if a.status != 503]
    assert not served, f"PUTs answered other than 503 while the database was down: {_describe(served)}"


def _assert_recovered_and_durable(run: LoadRun) -> None:
    """The same API server serves again by itself; every acknowledged PUT is in the history with its
    version and value; versions are contiguous; nothing is applied twice or out of nowhere; the audit
    chain verifies."""
    assert run.recovered is not None, (
        f"no PUT acknowledged within {RECOVERY_SECONDS} s after the database came back, without restarting "
        f"the API server; the last answers: {_describe(run.writes[-6:])}")
    acked = [a for a in run.writes if a.status == 200]
    assert sum(a.started >= run.recovered for a in acked) >= 20, "the server did not keep serving after recovery"
    tried = {(a.worker, a.n) for a in run.writes}
    acked_versions: dict[str, list[int]] = defaultdict(list)
    for a in acked:
        acked_versions[a.key].append(a.version or 0)
    for k, found in acked_versions.items():
        assert len(found) == len(set(found)), f"{k}: one version acknowledged to two writers"
    with ConfigManager.open(run.url, encryption_key=run.key, actor="checker") as checker:
        for k in KEYS:
            history = checker.history(NS, k)
            versions = sorted(item.version for item in history)
            assert versions == list(range(1, len(versions) + 1)), f"{k}: versions not contiguous: {versions}"
            by_version = {item.version: item.value for item in history}
            for a in (a for a in acked if a.key == k):
                assert by_version.get(a.version) == a.value, (
                    f"{k} v{a.version} was acknowledged as {a.value}; the history has {by_version.get(a.version)}")
            applied = [(item.value["writer"], item.value["n"]) for item in history]
            assert len(applied) == len(set(applied)), f"{k}: a write was applied twice"
            assert set(applied) <= tried, f"{k}: the history holds values nobody wrote"
        report = checker.audit_verify()
        assert report.ok, report


def _liveness_while_down(url: str, stop_db: Callable[[], None], start_db: Callable[[], None]) -> None:
    """A client just served (its key in the principal cache, its entry in L1) reads again the moment the
    database dies — the edge answers such a GET on the event loop — while `/health/live`, what an
    orchestrator probes, is polled: it must keep answering at once, as nothing may block the event loop."""
    key = generate_key()
    probes: list[Attempt] = []
    kicks: list[Attempt] = []
    stop = threading.Event()
    path = f"/api/v1/configs/{NS}/live"
    with ConfigManager.open(url, encryption_key=key, actor="tester") as manager:
        manager.set(NS, "live", 1)
        thread, server = serve_in_thread(manager, server_options())
        prober = threading.Thread(target=_prober, args=(server.url, stop, probes), daemon=True)
        headers = {"Authorization": f"Bearer {server.new_key()}"}
        client = httpx.Client(base_url=server.url, headers=headers, timeout=httpx.Timeout(60, connect=5))
        kicker = None
        try:
            prober.start()
            time.sleep(0.5)
            for _ in range(3):  # the first look at storage after this test's own writes forgets cached principals
                assert client.get(path).status_code == 200
                warmed = time.monotonic()  # the key authenticated: in the principal cache from here
                time.sleep(0.01)
            stop_db()
            down_from = time.monotonic()
            kicker = threading.Thread(target=_kick, args=(client, path, warmed, kicks), daemon=True)
            kicker.start()
            time.sleep(LIVE_DOWN_SECONDS)
        finally:
            stop.set()
            start_db()
            prober.join(60)  # a probe stuck behind a blocked event loop ends once the database is back
            if kicker is not None:
                kicker.join(60)
            client.close()
            thread.stop()
    assert not prober.is_alive(), "a liveness probe never got an answer"
    bad = [a for a in probes if a.status != 200 or a.elapsed > LIVE_SECONDS]
    assert not bad, (f"/health/live failed or took more than {LIVE_SECONDS} s with the database down: "
                     f"{_describe(sorted(bad, key=lambda a: -a.elapsed))}; the GETs sent as it died: "
                     f"{_describe(kicks)}")
    after = [a for a in probes if a.started >= down_from]
    assert len(after) >= LIVE_DOWN_SECONDS / PROBE_GAP / 2, f"only {len(after)} probes were answered while down"
    assert kicks and all(a.status in (200, 503) for a in kicks), _describe(kicks)


@pytest.fixture(scope="module")
def pg_restart(pg: PrivatePostgres) -> LoadRun:
    """PostgreSQL stopped with `-m immediate` (a crash: backends killed, no checkpoint), down for
    PG_DOWN_SECONDS, started again."""
    return _restart_under_load(pg.url(pg.new_database()), pg.stop_immediate, pg.start, PG_DOWN_SECONDS)


@pytest.fixture(scope="module")
def maria_restart(maria: PrivateMariaDB) -> LoadRun:
    """mariadbd killed with SIGKILL, down for MARIA_DOWN_SECONDS, started again."""
    return _restart_under_load(maria.url(maria.new_database()), maria.kill9, maria.start, MARIA_DOWN_SECONDS)


RUNS = [pytest.param("pg_restart", id="postgresql"), pytest.param("maria_restart", id="mariadb")]


@pytest.mark.parametrize("run", [pytest.param("pg_restart", id="postgresql"),
                                 pytest.param("maria_restart", id="mariadb")])
def test_database_down_answers_quick_503s_with_retry_after(request: pytest.FixtureRequest, run: str) -> None:
    _assert_quick_503s(request.getfixturevalue(run))


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_database_down_leaves_the_server_live(request: pytest.FixtureRequest, backend: str) -> None:
    if backend == "postgresql":
        pg: PrivatePostgres = request.getfixturevalue("pg")
        _liveness_while_down(pg.url(pg.new_database()), pg.stop_immediate, pg.start)
    else:
        maria: PrivateMariaDB = request.getfixturevalue("maria")
        _liveness_while_down(maria.url(maria.new_database()), maria.kill9, maria.start)


@pytest.mark.parametrize("run", RUNS)
def test_restart_keeps_every_acknowledged_write_and_recovers_by_itself(request: pytest.FixtureRequest,
                                                                      run: str) -> None:
    _assert_recovered_and_durable(request.getfixturevalue(run))


# ----------------------------------------------------------------------------- MariaDB killed mid-migration


def _assert_store_complete(maria: PrivateMariaDB, database: str, key: str) -> None:
    """Opening again completes the migration; the store takes writes, reads them and verifies."""
    url = maria.url(database)
    storage = open_storage(url, create=True)
    try:
        assert storage.pending_migrations() == [], database
    finally:
        storage.close()
    assert maria.tables(database) == {"entries", "versions", "audit_events", "meta", "api_keys", "changes",
                                      "schema_migrations"}
    with ConfigManager.open(url, encryption_key=key, actor="after-crash") as manager:
        first = manager.set("app", "k", {"n": 1})
        second = manager.set("app", "k", {"n": 2})
        assert (first.version, second.version) == (1, 2)
        assert manager.get("app", "k").value == {"n": 2}
        report = manager.audit_verify()
        assert report.ok, report
    rows = maria.execute("SELECT version FROM schema_migrations", database)
    assert sorted(int(r[0]) for r in rows) == list(range(1, MYSQL.latest + 1))


def test_mariadb_killed_mid_migration_by_hand(maria: PrivateMariaDB, key: str) -> None:
    """Partial first migrations (as MySQL's implicit DDL commits leave them), then kill -9 and restart."""
    statements = load_migrations("mysql")[0].statements()
    assert len(statements) >= 6
    meta_table = next(i for i, s in enumerate(statements) if s.startswith("CREATE TABLE IF NOT EXISTS meta"))
    states = {"nothing yet": 0, "two tables": 2, "meta without its revision row": meta_table + 1,
              "all but the last": len(statements) - 1, "all, row uncommitted": len(statements)}
    databases: dict[str, str] = {}
    held = []  # the connection with the uncommitted schema_migrations row stays open through the kill
    for state, applied in states.items():
        database = databases[state] = maria.new_database()
        conn = maria.connect(database)
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode = 'ANSI,STRICT_ALL_TABLES'")
            cur.execute(MYSQL.create_table)  # the runner creates it first, in the migration's "transaction"
            for statement in statements[:applied]:
                cur.execute(statement)
            if state == "all, row uncommitted":
                cur.execute("START TRANSACTION")
                cur.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (1, 'initial', 'x')")
        if state == "all, row uncommitted":
            held.append(conn)
        else:
            conn.close()
    maria.kill9()
    for conn in held:
        with contextlib.suppress(Exception):
            conn.close()
    maria.start()
    for state, database in databases.items():
        assert maria.execute("SELECT COUNT(*) FROM schema_migrations", database)[0][0] == 0, state
        _assert_store_complete(maria, database, key)


_OPENER = """
import sys
import time
from llm_config.core.apikeys import AUTH_CACHE_SECONDS
from llm_config.core.manager import ConfigManager

url, key = sys.argv[1], sys.argv[2]
print("start", flush=True)
started = time.monotonic()
with ConfigManager.open(url, encryption_key=key, actor="fault-opener") as manager:
    print(f"opened {time.monotonic() - started:.4f}", flush=True)
"""


def _start_opener(script: Path, url: str, key: str) -> subprocess.Popen[bytes]:
    err = script.with_suffix(".stderr").open("wb")
    try:
        proc = subprocess.Popen([sys.executable, str(script), url, key], stdout=subprocess.PIPE, stderr=err)
    finally:
        err.close()
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line != b"start\n":
        proc.kill()
        proc.wait(30)
        pytest.fail(f"opener did not start: {line!r} {script.with_suffix('.stderr').read_text()[-2000:]}")
    return proc


def test_mariadb_killed_during_config_manager_open(maria: PrivateMariaDB, key: str, tmp_path: Path) -> None:
    rng = random.Random()
    script = tmp_path / "opener.py"
    script.write_text(_OPENER)
    # how long a first open takes here (the faster of two), to kill within it
    durations = []
    for _ in range(2):
        proc = _start_opener(script, maria.url(maria.new_database()), key)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, script.with_suffix(".stderr").read_text()[-2000:]
        durations.append(float(out.decode().split()[1]))
    duration = min(durations)
    trials = 5
    outcomes = []  # (the opener's exit code, tables found after the restart, rows in schema_migrations)
    for trial in range(trials):
        database = maria.new_database()
        proc = _start_opener(script, maria.url(database), key)
        try:
            # spread over the open; its first ~30 % imports the driver and connects, the migration follows
            time.sleep(duration * (0.3 + 0.7 * (trial + rng.random()) / trials))
            maria.kill9()
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)
            if maria.proc is None:
                maria.start()
        migrated = maria.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = "
                                 f"'{database}' AND table_name = 'schema_migrations'")[0][0]
        applied = maria.execute("SELECT COUNT(*) FROM schema_migrations", database)[0][0] if migrated else 0
        outcomes.append((proc.returncode, len(maria.tables(database)), applied))
        _assert_store_complete(maria, database, key)
    # the opener was killed with the server at least once (exit 1: "unreachable"), never hung
    assert any(code != 0 for code, _, _ in outcomes), (duration, outcomes)


# ----------------------------------------------------------------------------- CLI: wrong password, nobody listening


def _cli_get(url: str, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LLM_CONFIG_KEY": key, "PGPASSFILE": os.devnull, "PGCONNECT_TIMEOUT": "5"}
    return subprocess.run([str(CLI), "-s", url, *args], capture_output=True, text=True, env=env, timeout=60,
                          check=False)


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
@pytest.mark.parametrize("fault", ["wrong password", "nobody listening"])
def test_cli_reports_an_unreachable_database_in_one_line_without_the_password(
    request: pytest.FixtureRequest, backend: str, fault: str,
) -> None:
    if not CLI.exists():
        _unavailable(f"the console script is not installed ({CLI})")
    server: PrivatePostgres | PrivateMariaDB = request.getfixturevalue("pg" if backend == "postgresql" else "maria")
    key = generate_key()
    database = server.new_database()
    scheme = "postgresql" if backend == "postgresql" else "mysql"
    good = f"{scheme}://{PW_USER}:{RIGHT_PASSWORD}@127.0.0.1:{server.port}/{database}"
    # the control: with the right password the same user reaches the same database
    assert _cli_get(good, key, "set", "ns", "k", "v").returncode == 0
    control = _cli_get(good, key, "get", "ns", "k", "--format", "json")
    assert control.returncode == 0, control
    assert json.loads(control.stdout)["value"] == "v", control

    port = server.port if fault == "wrong password" else _free_port()
    url = f"{scheme}://{PW_USER}:{PASSWORD}@127.0.0.1:{port}/{database}"
    started = time.monotonic()
    done = _cli_get(url, key, "get", "ns", "k")
    took = time.monotonic() - started
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), lines
    assert PASSWORD not in done.stderr and PASSWORD not in done.stdout, done
    assert "hunter2" not in done.stderr, done
    assert done.stdout == "", done
    assert took < 15, f"{fault}: the CLI took {took:.1f} s"
