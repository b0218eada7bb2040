"""Jobs: every long operation, who asked for it, how it went and how it ended.

A job's kind (jobs.kinds) says what it does; the engine (jobs.engine) is the only code that
creates jobs and moves them between states.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})
TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
# The job state machine: the only moves jobs.engine.job_transition allows.
TRANSITIONS = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.RUNNING: frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


class JobQuerySet(models.QuerySet):
    def active(self):
        return self.filter(status__in=ACTIVE_STATUSES)

    def terminal(self):
        return self.filter(status__in=TERMINAL_STATUSES)


class Job(models.Model):
    """One operation of a registered kind on one object (a VM, a host...), run by a Celery worker.

    Status only moves through jobs.engine.job_transition (see TRANSITIONS). At most one active job
    per locked object (``lock_key``, e.g. ``vm:<uuid>``), enforced by the database. Names are kept so
    history survives the deletion of what the job was about.
    """

    kind = models.CharField(max_length=40, db_index=True)
    # None, not "": a NULL never meets the one-active-job index (a bulk parent locks nothing)
    lock_key = models.CharField(max_length=100, null=True, blank=True)  # noqa: DJ001
    vm = models.ForeignKey("vms.VM", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    vm_uuid = models.UUIDField(null=True, blank=True, db_index=True)  # None for host-wide jobs
    vm_name = models.CharField(max_length=255, blank=True)
    # What the job is about when it is not a VM: "pool images on lab1", "volume disk.qcow2 in images".
    target_name = models.CharField(max_length=255, blank=True)
    host = models.ForeignKey("hosts.Host", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    host_name = models.CharField(max_length=100, blank=True)
    target_host = models.ForeignKey(
        "hosts.Host", null=True, blank=True, on_delete=models.SET_NULL, related_name="incoming_jobs"
    )
    params = models.JSONField(default=dict, blank=True)

    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    progress = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    result = models.JSONField(default=dict, blank=True)
    cancel_requested = models.BooleanField(default=False)
    postcopy_requested = models.BooleanField(default=False)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    # A parent whose handler has handed the rest to its children: it ends when the last of them does.
    awaiting_children = models.BooleanField(default=False)

    requested_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="virtfleet_jobs"
    )
    requested_by_name = models.CharField(max_length=150, blank=True)
    requested_from = models.GenericIPAddressField(null=True, blank=True)
    queued_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Bumped on every change browsers see; they drop pushed jobs older than what they show.
    version = models.PositiveBigIntegerField(default=1)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-queued_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["lock_key"],
                condition=models.Q(status__in=["queued", "running"]),
                name="one_active_job_per_lock",
            ),
        ]
        indexes = [
            models.Index(fields=["vm_uuid", "-queued_at"]),
            models.Index(fields=["status", "-queued_at"]),
            models.Index(fields=["parent", "status"]),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.subject_name} (job {self.pk})"

    @property
    def spec(self):
        """The registered kind of this job (jobs.kinds.Kind), or a stand-in for an unknown one."""
        from .kinds import kind_of

        return kind_of(self.kind)

    @property
    def shown_params(self) -> dict:
        """Its options as pages and the API show them: secrets (a password hash...) hidden."""
        return self.spec.shown_params(self.params)

    def get_kind_display(self) -> str:
        return self.spec.title(self)

    @property
    def subject_name(self) -> str:
        return self.vm_name or self.target_name or self.host_name

    @property
    def headline(self) -> str:
        """What the job does to what, in one line: "Define network lab on lab1" (the noun the kind's
        label ends with and the subject starts with is said once)."""
        kind, subject = self.get_kind_display(), self.subject_name
        noun = kind.rsplit(" ", 1)[-1].lower()
        first, _, rest = subject.partition(" ")
        if rest and first.lower() == noun:
            subject = rest
        return f"{kind} {subject}".strip()

    @property
    def required_right(self) -> tuple[str, str]:
        """(access action, "vm" or "host"): the right that started this job, needed to act on it."""
        spec = self.spec
        # VM jobs and bulk parents (of VM jobs): the VM rights; pools, volumes, hosts: their host's
        return spec.right, ("vm" if spec.lock in ("vm", "") else "host")

    def audit_target(self) -> dict:
        """How the audit log names this job (and the VM and host it is about)."""
        return {
            "target_type": "job",
            "target_id": str(self.pk),
            "target_name": self.headline,
            "vm_uuid": self.vm_uuid,
            "vm_name": self.vm_name,
            "host_ref": self.host_id,
            "host_name": self.host_name,
        }

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def cancellable(self) -> bool:
        """Can it be cancelled now: queued, or running of a kind that stops on request (or a parent)."""
        if self.status == JobStatus.QUEUED:
            return True
        return self.status == JobStatus.RUNNING and (self.spec.cancellable or self.awaiting_children)

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None


class JobEvent(models.Model):
    """One step of a job's timeline (status changes and progress messages)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=16, choices=JobStatus.choices)
    progress = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"job {self.job_id} {self.status} at {self.at:%H:%M:%S}: {self.message}"
