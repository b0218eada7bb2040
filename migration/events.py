"""The live events of migrations: the progress readings a running migration pushes."""

from __future__ import annotations

from typing import Literal

from core.realtime import Audience, Event, Payload, audience, push_now
from jobs.events import JobPayload, job_groups, job_payload
from jobs.models import Job
from virt.migration import MigrationProgress as Reading


class MigrationStats(Payload):
    """One reading of a running migration, as the VM and job pages show it."""

    phase: str  # "starting", "copying memory", "copying disks", "post-copy", "finishing"
    percent: int
    elapsed_ms: int
    data_total: int
    data_processed: int
    data_remaining: int
    memory_bps: int
    dirty_rate_bps: int
    expected_downtime_ms: int
    iteration: int
    postcopy: bool


class MigrationProgress(Event):
    """A running migration's job (its progress and message, with its version) and its statistics."""

    type: Literal["migration.progress"] = "migration.progress"
    job: JobPayload
    progress: MigrationStats

    def audience(self) -> Audience:
        return audience(vm=self.job.vm_uuid, hosts=[self.job.host, self.job.target_host])


def migration_progressed(job: Job, reading: Reading) -> None:
    """Push one reading at once (the watcher runs outside any transaction, at least twice a second)."""
    stats = MigrationStats(
        phase=reading.phase,
        percent=reading.percent,
        elapsed_ms=reading.elapsed_ms,
        data_total=reading.data_total,
        data_processed=reading.data_processed,
        data_remaining=reading.data_remaining,
        memory_bps=reading.memory_bps,
        dirty_rate_bps=reading.dirty_rate_bps,
        expected_downtime_ms=reading.expected_downtime_ms,
        iteration=reading.iteration,
        postcopy=reading.postcopy,
    )
    push_now(job_groups(job), MigrationProgress(job=job_payload(job), progress=stats))
