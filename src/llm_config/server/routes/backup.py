"""`/api/v1/admin/backup`, `/api/v1/admin/restore` and `/api/v1/admin/jobs/{id}` (SPEC §8; admins only).

A backup is written in the thread pool to a private temporary file (so any error is still a JSON answer),
then streamed. A restore is authorized before a single body byte is read; its body is read here under its
own limit (`--max-restore-body`, not `--max-body`: `paths.body_limits`) into a private temporary file; the answer is
202 with a job to poll, which checks the file whole (manifest, digest, master key) before replacing
anything — the same `ConfigManager.restore` as the CLI's.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import AsyncIterator
from typing import IO, Any, Final

from fastapi import APIRouter, Path, Query
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from llm_config.errors import NotFoundError
from llm_config.server.auth import require_unscoped
from llm_config.server.errors import HTTPError
from llm_config.server.jobs import Jobs
from llm_config.server.paths import BACKUP_PATH, RESTORE_PATH, RESTORE_TIMEOUT_S
from llm_config.server.routes.common import (
    call,
    caller,
    error_responses,
    json_response,
    manager_of,
    principal_of,
    request_id_of,
    run_blocking,
    source_ip_of,
)
from llm_config.server.routes.schemas import JobModel

__all__ = ["router"]

RESTORE_TYPES: Final = ("application/octet-stream", "application/gzip")
CHUNK: Final = 1 << 16
_JOB_ID: Final = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"

router = APIRouter(tags=["admin"])


def jobs_of(request: Request) -> Jobs:
    jobs = getattr(request.app.state, "jobs", None)
    if jobs is None:
        jobs = request.app.state.jobs = Jobs()
    assert isinstance(jobs, Jobs)
    return jobs


def _spool() -> IO[bytes]:
    return tempfile.TemporaryFile(prefix="llm-config-")


async def _file_chunks(fh: IO[bytes]) -> AsyncIterator[bytes]:
    try:
        while chunk := fh.read(CHUNK):
            yield chunk
    finally:
        fh.close()


@router.get(
    BACKUP_PATH,
    summary="A consistent, checksummed backup of the whole store (gzip'd JSON lines; secrets stay sealed)",
    responses={200: {"content": {"application/gzip": {}}, "description": "The backup file"},
               **error_responses(503)},
)
async def get_backup(request: Request) -> Response:
    spool = _spool()
    try:
        summary = await call(request, "backup", None, caller(request).backup, spool)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return StreamingResponse(_file_chunks(spool), media_type="application/gzip", headers={
        "Content-Disposition": 'attachment; filename="llm-config.backup"',
        "X-Backup-SHA256": summary.sha256,
    })


@router.post(
    RESTORE_PATH,
    status_code=202,
    summary="Replace the whole store with a backup (the request body); answers 202 with a job to poll",
    responses={202: {"model": JobModel, "description": "Started; poll the job at Location"},
               **error_responses(400, 408, 413, 415, 503)},
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
)
async def post_restore(
    request: Request,
    force: bool = Query(False, description="Replace a store that is not empty"),
) -> Response:
    manager, principal = manager_of(request), principal_of(request)
    await call(request, "restore", None, require_unscoped, manager, principal, "system:import",
               source_ip=source_ip_of(request), request_id=request_id_of(request))
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in RESTORE_TYPES:
        raise HTTPError(415, "Send the backup file as the body with Content-Type: application/octet-stream "
                             "(or application/gzip)")
    limit = int(request.app.state.options.max_restore_body)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPError(413, f"Backup larger than {limit} bytes (--max-restore-body)")
    spool = _spool()
    try:
        await _receive_into(request, spool, limit)
        spool.seek(0)  # an empty or damaged body fails in the job, with the same words as the CLI's
    except BaseException:
        spool.close()
        raise
    view = caller(request)

    def work() -> dict[str, Any]:
        return view.restore(spool, force=force).to_json()

    job = jobs_of(request).start("restore", principal.actor, work, cleanup=spool.close)
    return json_response(job.to_json(), status_code=202, headers={"Location": f"/api/v1/admin/jobs/{job.id}"})


async def _receive_into(request: Request, spool: IO[bytes], limit: int) -> None:
    deadline = time.monotonic() + RESTORE_TIMEOUT_S
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise HTTPError(413, f"Backup larger than {limit} bytes (--max-restore-body)")
        if time.monotonic() > deadline:
            raise HTTPError(408, f"Backup not received within {RESTORE_TIMEOUT_S:g} s")
        await run_blocking(request, spool.write, chunk) if len(chunk) > CHUNK else spool.write(chunk)


@router.get(
    "/api/v1/admin/jobs/{job_id}",
    summary="A long admin job started by this process (restore, rotate-key): running, succeeded or failed",
    responses={200: {"model": JobModel}, **error_responses(400, 503)},
)
async def get_job(request: Request, job_id: str = Path(pattern=_JOB_ID)) -> Response:
    manager, principal = manager_of(request), principal_of(request)
    await call(request, "jobs_get", None, require_unscoped, manager, principal, "system:read",
               source_ip=source_ip_of(request), request_id=request_id_of(request))
    job = jobs_of(request).get(job_id)
    if job is None:
        raise NotFoundError("No such job in this server process")
    return json_response(job.to_json())



