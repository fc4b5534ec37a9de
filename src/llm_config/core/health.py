"""Health of a store (`llm-config doctor`, `/health`): storage, key, row integrity, cache, audit chain.

Owns the checks and their three levels of detail:
- public (`/health` without a key): each check's status only — no messages, counts or paths;
- detail (`/health` with a `system:read` key): messages, counts and cache statistics, still cheap;
- deep (`llm-config doctor`): also every ciphertext's key id and a full `audit verify` of the store.

A row that failed its MAC in this process keeps the `integrity` check unhealthy until it reads clean
again; a store opened without the master key cannot check MACs at all, and says so (degraded).
Never raises: health is how an operator finds out what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from llm_config.core.custody import INSTANCE_SECRET, StoreKeys
from llm_config.core.verify import verify_store
from llm_config.crypto.aead import envelope_key_id
from llm_config.crypto.keys import HOW_TO_SUPPLY, KeySource
from llm_config.types import Storage

__all__ = ["SEAL_WARNING", "ciphertexts_by_key_id", "overall", "store_health"]

_RANK: Final = {"healthy": 0, "degraded": 1, "unhealthy": 2}
SEAL_WARNING: Final = 2**30
"""Encryptions under one key after which health degrades: a quarter of NIST SP 800-38D's 2^32 limit for
AES-GCM with random 96-bit nonces, so there is time to rotate."""


def overall(checks: dict[str, dict[str, Any]]) -> str:
    """The worst status among the checks."""
    return max((c["status"] for c in checks.values()), key=_RANK.__getitem__, default="healthy")


def ciphertexts_by_key_id(storage: Storage) -> dict[str, int]:
    """How many ciphertexts each master key id still seals (SPEC §2: when an old key can go)."""
    counts: dict[str, int] = {}
    instance = storage.get_meta(INSTANCE_SECRET)
    for envelope in [*storage.sealed_values(), *([instance] if instance else [])]:
        kid = envelope_key_id(envelope) or "unknown"
        counts[kid] = counts.get(kid, 0) + 1
    return counts


def _key_check(source: KeySource | None, keys: StoreKeys | None, warning: str | None, *, detail: bool,
               deep: bool, storage: Storage) -> dict[str, Any]:
    if keys is None:
        if warning is not None:
            return {"status": "degraded", "message": f"{warning}; writes and secrets unavailable"}
        return {"status": "degraded", "message": "no master key loaded: writes and secrets unavailable"
                + (f"; {HOW_TO_SUPPLY}" if detail else "")}
    assert source is not None
    check: dict[str, Any] = {
        "status": "healthy",
        "message": f"keyring from {source.origin}; sealing key id {keys.keyring.primary_id}" if deep
        else f"master key loaded; sealing key id {keys.keyring.primary_id}",
        "key_ids": keys.keyring.key_ids,
    }
    if deep:
        counts = ciphertexts_by_key_id(storage)
        check["ciphertexts_by_key_id"] = counts
        foreign = sorted(set(counts) - set(keys.keyring.key_ids))
        if foreign:
            check["status"] = "unhealthy"
            check["message"] += (
                f"; ciphertexts sealed by key id(s) {', '.join(foreign)} cannot be opened: add that key to "
                "the keyring (LLM_CONFIG_KEY=new,old)"
            )
    _key_use(check, keys, storage)
    return check


def _key_use(check: dict[str, Any], keys: StoreKeys, storage: Storage) -> None:
    """Key rotation (core/rotation.py): keys this process was asked for but lacks, and encryptions per key id."""
    missing = keys.keyring.missing_key_ids
    if missing:
        check["status"] = max(check["status"], "degraded", key=_RANK.__getitem__)
        check["message"] += (f"; secrets sealed by key id(s) {', '.join(missing)} were asked for and refused: that "
                             "key is not in this process's keyring (add it: LLM_CONFIG_KEY=new,old)")
    try:
        seals = storage.seal_counts()
    except Exception:  # report, never raise (the storage check says why)
        return
    check["seals_by_key_id"] = seals
    used = seals.get(keys.keyring.primary_id, 0)
    if used >= SEAL_WARNING:
        check["status"] = max(check["status"], "degraded", key=_RANK.__getitem__)
        check["message"] += (f"; key id {keys.keyring.primary_id} has sealed {used} values, near the 2^32 "
                             "encryptions NIST SP 800-38D allows one AES-GCM key with random nonces: rotate the "
                             "master key ('llm-config rotate-key')")


def _integrity_check(storage: Storage, keys: StoreKeys | None, problem: str | None) -> dict[str, Any]:
    if problem is not None and storage.integrity_pending():
        return {"status": "unhealthy", "message": f"{problem}; until this store's row MACs are computed its rows "
                "are not served and it takes no writes"}
    failures = storage.integrity_failures()
    if failures:
        return {"status": "unhealthy", "message": f"{len(failures)} row(s) fail their integrity check and are "
                "not served; run 'llm-config audit verify'", "problems": failures[:10]}
    if keys is None:
        return {"status": "degraded", "message": "row MACs cannot be checked without the master key: rows are "
                "served unchecked"}
    if storage.integrity_pending():
        return {"status": "degraded", "message": "row MACs of this older store are not computed yet"}
    return {"status": "healthy", "message": "rows are checked against their MACs on every read"}


def store_health(
    storage: Storage, *, source: KeySource | None, keys: StoreKeys | None, key_warning: str | None,
    cache_stats: Callable[[], str], detail: bool, deep: bool, initial_key_file: Path | None = None,
    integrity_problem: str | None = None, cache_problem: str | None = None,
) -> dict[str, Any]:
    """`{"status", "checks": {name: {"status", "message", …}}}`; without `detail`, statuses only."""
    checks: dict[str, dict[str, Any]] = {}
    head = None
    try:
        head = storage.audit_head()
        checks["storage"] = {"status": "healthy", "message": f"{storage.url} reachable" if deep else "reachable"}
        reachable = True
    except Exception as exc:  # report, never raise
        checks["storage"] = {"status": "unhealthy", "message": str(exc) if deep else type(exc).__name__}
        reachable = False
    checks["key"] = _key_check(source, keys, key_warning, detail=detail, deep=deep and reachable, storage=storage)
    if reachable:
        try:
            checks["integrity"] = _integrity_check(storage, keys, integrity_problem)
        except Exception as exc:  # report, never raise
            checks["integrity"] = {"status": "unhealthy", "message": type(exc).__name__}
    checks["cache"] = {"status": "healthy" if cache_problem is None else "degraded",
                       "message": cache_stats() if cache_problem is None else f"{cache_problem}; {cache_stats()}"}
    events = head[0] if head else 0
    if keys is None:
        checks["audit"] = {"status": "degraded", "message": f"{events} events; appending needs the master key"}
    elif not deep or not reachable:
        checks["audit"] = {"status": "healthy", "message": f"{events} events; audit key loaded"}
    else:
        try:
            report = verify_store(storage, keys)
            checks["audit"] = {
                "status": "healthy" if report.ok else "unhealthy",
                "message": f"{report.events} events, chain and rows {'verify' if report.ok else 'BROKEN'}",
                "problems": report.problems[:10],
            }
        except Exception as exc:  # report, never raise
            checks["audit"] = {"status": "unhealthy", "message": f"verification failed: {exc}"}
    if initial_key_file is not None and initial_key_file.exists():
        checks["initial_admin_key"] = {
            "status": "degraded",
            "message": f"{initial_key_file} still holds the first admin key: store it safely and delete the file",
        }
    status = overall(checks)
    if not detail:
        checks = {name: {"status": check["status"]} for name, check in checks.items()}
    return {"status": status, "checks": checks}
