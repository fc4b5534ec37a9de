"""Long admin jobs (SPEC §8: `restore`, `rotate-key`): started by a request that answers 202 with the
job, run in a thread of their own, polled at `/api/v1/admin/jobs/{id}`.

Jobs live in the process that runs them (behind a load balancer, poll with the same session or read the
outcome from the audit trail, where every job leaves its event). At most `KEEP` finished jobs are kept.
Never: puts a value or a secret in a job's result or error (they hold summaries and our error messages).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from llm_config.errors import LLMConfigError, http_status_for
from llm_config.server.errors import reason
from llm_config.server.logs import get_logger
from llm_config.storage.sql import new_id
from llm_config.times import utc_now

__all__ = ["Job", "Jobs"]

log = get_logger()
KEEP: Final = 100


@dataclass
class Job:
    id: str
    kind: str
    started_by: str
    status: str = "running"  # running | succeeded | failed
    started_at: str = field(default_factory=utc_now)
    finished_at: str | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "status": self.status, "started_by": self.started_by,
                "started_at": self.started_at, "finished_at": self.finished_at, "result": self.result,
                "error": self.error}


class Jobs:
    """The jobs of this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, Job] = OrderedDict()

    def start(self, kind: str, started_by: str, work: Callable[[], dict[str, Any]],
              cleanup: Callable[[], None] | None = None) -> Job:
        job = Job(new_id(), kind, started_by)
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > KEEP:
                oldest = next(iter(self._jobs))
                if self._jobs[oldest].status == "running":
                    break
                self._jobs.popitem(last=False)

        def run() -> None:
            try:
                job.result = work()
                job.status = "succeeded"
            except LLMConfigError as exc:
                status = http_status_for(exc)
                job.error = {"error": reason(status), "message": exc.message, "status": status}
                job.status = "failed"
            except Exception as exc:  # a job must always end with a status; our code's fault: no text
                log.error("job_failed", job=job.id, kind=kind, error_type=type(exc).__name__)
                job.error = {"error": reason(500), "message": "internal error", "status": 500}
                job.status = "failed"
            finally:
                job.finished_at = utc_now()
                if cleanup is not None:
                    cleanup()

        threading.Thread(target=run, name=f"llm-config-job-{kind}", daemon=True).start()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)
