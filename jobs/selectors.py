"""Read-only queries about jobs (pages and API read the database only)."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet

from core.errors import NotFound
from core.filters import IdFilter, SearchFilter
from core.params import parse_id

from . import kinds
from .models import ACTIVE_STATUSES, Job, JobStatus

STATUS_CHOICES = [("active", "Active"), *JobStatus.choices]


class JobFilterSet(django_filters.FilterSet):
    """The filters of the job list, on its page and in the API."""

    q = SearchFilter(method="search", help_text="VM name, user or message contains")
    status = django_filters.ChoiceFilter(choices=STATUS_CHOICES, method="by_status")
    kind = django_filters.ChoiceFilter(choices=kinds.choices)
    host = IdFilter(method="on_host", help_text="jobs on this host id, or migrating to it")
    vm = django_filters.UUIDFilter(field_name="vm_uuid")
    parent = IdFilter(field_name="parent_id", help_text="children of this job")

    class Meta:
        model = Job
        fields: list[str] = []

    def search(self, qs, name, value):
        return qs.filter(
            Q(vm_name__icontains=value) | Q(requested_by_name__icontains=value) | Q(message__icontains=value)
        )

    def by_status(self, qs, name, value):
        return qs.filter(status__in=ACTIVE_STATUSES) if value == "active" else qs.filter(status=value)

    def on_host(self, qs, name, value):
        return qs.filter(Q(host_id=value) | Q(target_host_id=value))


def job_list(*, params=None) -> QuerySet[Job]:
    """Jobs matching the filters in ``params`` (a query dict), newest first."""
    return JobFilterSet(params or {}, queryset=Job.objects.all()).qs.order_by("-queued_at", "-id")


def job_get(*, job_id) -> Job:
    pk = parse_id(job_id)
    try:
        if pk is None:
            raise Job.DoesNotExist
        return Job.objects.select_related("host", "target_host", "vm").get(pk=pk)
    except Job.DoesNotExist:
        raise NotFound(f"There is no job with id {str(job_id)[:40]}.") from None


def active_job(*, lock_key: str) -> Job | None:
    """The active job holding ``lock_key`` (``vm:<uuid>``, ``host:<id>``), if any."""
    return Job.objects.active().filter(lock_key=lock_key).first()


def recent_jobs(*, vm_uuid=None, host_id: int | None = None, kind: str = "", kind_prefix: tuple[str, ...] = (),
                limit: int = 10) -> list[Job]:  # fmt: skip
    qs = Job.objects.all()
    if kind_prefix:
        prefixed = Q()
        for prefix in kind_prefix:
            prefixed |= Q(kind__startswith=prefix)
        qs = qs.filter(prefixed)
    if vm_uuid is not None:
        qs = qs.filter(vm_uuid=vm_uuid)
    if host_id is not None:
        qs = qs.filter(host_id=host_id)
    if kind:
        qs = qs.filter(kind=kind)
    return list(qs.order_by("-queued_at", "-id")[:limit])
