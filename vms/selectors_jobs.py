"""Read-only queries about jobs."""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass

from django.db.models import Q, QuerySet

from core.errors import NotFound
from core.params import parse_id

from .models import Job, JobKind, JobStatus


@dataclass(frozen=True)
class JobFilter:
    status: str = ""
    kind: str = ""
    host_id: int | None = None
    vm_uuid: str = ""
    q: str = ""
    active_only: bool = False

    @classmethod
    def from_params(cls, params) -> JobFilter:
        status = params.get("status") or ""
        kind = params.get("kind") or ""
        host = str(params.get("host") or "")
        vm = (params.get("vm") or "").strip()
        try:
            vm = str(uuidlib.UUID(vm)) if vm else ""
        except ValueError:
            vm = ""
        return cls(
            status=status if status in JobStatus.values or status == "active" else "",
            kind=kind if kind in JobKind.values else "",
            host_id=parse_id(host),
            vm_uuid=vm,
            q=(params.get("q") or "").strip()[:200],
        )


def job_list(*, filters: JobFilter = JobFilter()) -> QuerySet[Job]:
    qs = Job.objects.all()
    if filters.status == "active":
        qs = qs.active()
    elif filters.status:
        qs = qs.filter(status=filters.status)
    if filters.kind:
        qs = qs.filter(kind=filters.kind)
    if filters.host_id is not None:
        qs = qs.filter(Q(host_id=filters.host_id) | Q(target_host_id=filters.host_id))
    if filters.vm_uuid:
        qs = qs.filter(vm_uuid=filters.vm_uuid)
    if filters.q:
        qs = qs.filter(
            Q(vm_name__icontains=filters.q)
            | Q(requested_by_name__icontains=filters.q)
            | Q(message__icontains=filters.q)
        )
    return qs.order_by("-queued_at", "-id")


def job_get(*, job_id) -> Job:
    pk = parse_id(job_id)
    try:
        if pk is None:
            raise Job.DoesNotExist
        return Job.objects.select_related("host", "target_host", "vm").get(pk=pk)
    except Job.DoesNotExist:
        raise NotFound(f"There is no job with id {str(job_id)[:40]}.") from None


def vm_active_job(*, vm_uuid) -> Job | None:
    return Job.objects.active().filter(vm_uuid=vm_uuid).first()
