"""The live events of jobs: their schema, and the one place that builds and sends them."""

from __future__ import annotations

from typing import Any, Literal

from core.realtime import JOBS_GROUP, Audience, Event, Payload, audience, job_group, push_on_commit, vm_group

from .models import Job


class JobPayload(Payload):
    """A job as the API (jobs.serializers.JobSerializer), the job tables and this event show it."""

    id: int
    kind: str
    kind_label: str
    vm_uuid: str | None
    vm_name: str
    target_name: str
    host: int | None
    host_name: str
    target_host: int | None
    target_host_name: str
    params: dict[str, Any]
    status: str
    status_label: str
    progress: int
    message: str
    error: str
    error_code: str
    result: dict[str, Any]
    cancel_requested: bool
    cancellable: bool
    requested_by_name: str
    queued_at: str
    started_at: str | None
    finished_at: str | None
    worker: str
    attempts: int
    celery_task_id: str
    parent: int | None
    version: int


class JobUpdated(Event):
    type: Literal["job.updated"] = "job.updated"
    job: JobPayload

    def audience(self) -> Audience:
        return audience(vm=self.job.vm_uuid, hosts=[self.job.host, self.job.target_host])


def job_payload(job: Job) -> JobPayload:
    from .serializers import job_data

    return JobPayload(**job_data(job))


def job_groups(job: Job) -> list[str]:
    return [JOBS_GROUP, job_group(job.pk)] + ([vm_group(job.vm_uuid)] if job.vm_uuid else [])


def job_changed(job: Job) -> None:
    """Send ``job.updated`` for ``job`` (saved, with its new version) once the transaction commits."""
    push_on_commit(job_groups(job), JobUpdated(job=job_payload(job)))
