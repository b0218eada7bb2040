"""How long history is kept: finished jobs (with their timelines), audit events and closed console
sessions older than their retention are deleted, in batches, by a daily beat task or by
``manage.py prune_history``. A retention of 0 days keeps that history for ever (the default).

Active jobs and open console sessions are never touched, and every pruning that deleted anything
is itself recorded in the audit log (which rows, how many, up to when).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_record
from console.models import ConsoleSession
from jobs.models import TERMINAL_STATUSES, Job

log = logging.getLogger(__name__)

BATCH = 2000


@dataclass
class PruneResult:
    jobs: int = 0
    audit_events: int = 0
    console_sessions: int = 0
    cutoffs: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.jobs + self.audit_events + self.console_sessions


def _delete_in_batches(queryset) -> int:
    """Delete the rows of ``queryset`` BATCH at a time, each batch in its own short transaction, so
    a large first pruning never holds the database for long."""
    deleted = 0
    while True:
        ids = list(queryset.order_by().values_list("pk", flat=True)[:BATCH])
        if not ids:
            return deleted
        with transaction.atomic():
            queryset.model.objects.filter(pk__in=ids).delete()
        deleted += len(ids)


def _cutoff(days: int, now: datetime) -> datetime | None:
    return now - timedelta(days=days) if days and days > 0 else None


def prune_history(
    *, job_days: int | None = None, audit_days: int | None = None, now: datetime | None = None, dry_run: bool = False
) -> PruneResult:
    """Delete history older than its retention (days; None = the setting, 0 = keep for ever).

    Audit events and console sessions share the audit retention: both answer "who did what"."""
    cfg = settings.VIRTFLEET
    now = now or timezone.now()
    job_cut = _cutoff(cfg["JOB_RETENTION_DAYS"] if job_days is None else job_days, now)
    audit_cut = _cutoff(cfg["AUDIT_RETENTION_DAYS"] if audit_days is None else audit_days, now)
    result = PruneResult()
    prune = (lambda qs: qs.count()) if dry_run else _delete_in_batches
    if job_cut is not None:
        result.cutoffs["jobs"] = job_cut.isoformat()
        result.jobs = prune(Job.objects.filter(status__in=TERMINAL_STATUSES, finished_at__lt=job_cut))
    if audit_cut is not None:
        result.cutoffs["audit"] = audit_cut.isoformat()
        result.audit_events = prune(AuditEvent.objects.filter(at__lt=audit_cut))
        result.console_sessions = prune(ConsoleSession.objects.filter(closed_at__lt=audit_cut))  # open: NULL
    if result.total and not dry_run:
        log.info(
            "history pruned: %d jobs, %d audit events, %d console sessions (%s)",
            result.jobs, result.audit_events, result.console_sessions, result.cutoffs,
        )  # fmt: skip
        with transaction.atomic():
            audit_record(
                action="history.prune",
                user=None,
                ip=None,
                message=(
                    f"Deleted {result.jobs} finished jobs, {result.audit_events} audit events and "
                    f"{result.console_sessions} console sessions older than their retention."
                ),
                details={
                    "jobs": result.jobs,
                    "audit_events": result.audit_events,
                    "console_sessions": result.console_sessions,
                    "before": result.cutoffs,
                },
            )
    return result
