from django.db import models
from django.utils import timezone

from virt import PowerState
from virt.domains import redact_graphics_endpoint


class VMState(models.TextChoices):
    """Power states as mapped by virt.power_state (the one mapping from libvirt state + reason)."""

    RUNNING = PowerState.RUNNING, "Running"
    PAUSED = PowerState.PAUSED, "Paused"
    SHUTTING_DOWN = PowerState.SHUTTING_DOWN, "Shutting down"
    SHUTOFF = PowerState.SHUTOFF, "Shut off"
    CRASHED = PowerState.CRASHED, "Crashed"
    PMSUSPENDED = PowerState.PMSUSPENDED, "Suspended (guest)"
    UNKNOWN = PowerState.UNKNOWN, "Unknown"


class VMQuerySet(models.QuerySet):
    def present(self):
        return self.filter(gone_at__isnull=True)


class VM(models.Model):
    """A virtual machine, identified by its libvirt UUID across the whole fleet.

    The row is always rewritten from what libvirt reports (host_sync / the listener), never guessed.
    A VM that disappears keeps its row (and job history) with ``gone_at`` set; a VM that appears on
    another host moves there.
    """

    uuid = models.UUIDField(unique=True)
    host = models.ForeignKey("hosts.Host", on_delete=models.PROTECT, related_name="vms")
    # Another host that also reports this UUID (e.g. the destination during a migration); the VM
    # moves there if its current host loses it.
    also_on = models.ForeignKey("hosts.Host", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    name = models.CharField(max_length=255, db_index=True)
    state = models.CharField(max_length=16, choices=VMState.choices, default=VMState.UNKNOWN, db_index=True)
    state_reason = models.CharField(max_length=100, blank=True)
    libvirt_state = models.SmallIntegerField(default=0)
    libvirt_reason = models.SmallIntegerField(default=0)
    vcpus = models.PositiveIntegerField(default=0)
    max_vcpus = models.PositiveIntegerField(default=0)
    memory_kib = models.BigIntegerField(default=0)
    max_memory_kib = models.BigIntegerField(default=0)
    persistent = models.BooleanField(default=True)
    autostart = models.BooleanField(default=False)
    managed_save = models.BooleanField(default=False)
    arch = models.CharField(max_length=32, blank=True)
    graphics_type = models.CharField(max_length=16, blank=True)
    graphics_listen = models.CharField(max_length=255, blank=True)
    graphics_port = models.IntegerField(null=True, blank=True)
    graphics_socket = models.CharField(max_length=1024, blank=True)
    graphics_password = models.BooleanField(default=False)
    xml = models.TextField(blank=True)

    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)
    gone_at = models.DateTimeField(null=True, blank=True, db_index=True)
    state_changed = models.DateTimeField(default=timezone.now)
    # When the libvirt answer this row holds was read (taken before the call). A writer whose
    # answer is older leaves the row alone: a resync that listed the host before an event must
    # not overwrite what the event's re-read found after it.
    observed_at = models.DateTimeField(null=True, blank=True)
    # Bumped on every change; browsers drop pushed rows older than what they show.
    version = models.PositiveBigIntegerField(default=1)

    objects = VMQuerySet.as_manager()

    class Meta:
        verbose_name = "VM"
        ordering = ["name"]
        # Given fleet-wide through a role (accounts/roles.py) or on one VM (django-guardian).
        permissions = [
            ("operate_vm", "Start, stop and otherwise operate the VM"),
            ("console_vm", "Open the VM's console"),
            ("migrate_vm", "Migrate the VM"),
        ]
        # One index per sortable column of the fleet table (present VMs first), so the first page
        # of 10,000 VMs never sorts the whole table.
        indexes = [
            models.Index(fields=["host", "name"]),
            models.Index(fields=["gone_at", "name"]),
            models.Index(fields=["gone_at", "state", "name"]),
            models.Index(fields=["gone_at", "memory_kib"]),
            models.Index(fields=["gone_at", "vcpus"]),
            models.Index(fields=["gone_at", "state_changed"]),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_gone(self) -> bool:
        return self.gone_at is not None

    @property
    def graphics_reach(self) -> str:
        """Where the VM's display listens, in words and without its port (browsers never get it)."""
        if not self.graphics_type:
            return ""
        if self.graphics_socket:
            return "a unix socket on its host"
        listen = self.graphics_listen
        if listen in ("", "0.0.0.0", "::", "[::]"):  # noqa: S104 (describing, not binding)
            return "all of its host's addresses"
        if listen.startswith("127.") or listen in ("::1", "localhost"):
            return "its host's loopback only"
        return f"{listen} on its host"

    @property
    def public_xml(self) -> str:
        """The domain XML as pages and the API show it: no graphics port, listen address or socket."""
        return redact_graphics_endpoint(self.xml)

    @property
    def memory_mib(self) -> int:
        return self.memory_kib // 1024

    @property
    def max_memory_mib(self) -> int:
        return self.max_memory_kib // 1024


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})
TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
# The job state machine: the only moves vms.jobs.job_transition allows.
TRANSITIONS = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.RUNNING: frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


class JobKind(models.TextChoices):
    START = "start", "Start"
    SHUTDOWN = "shutdown", "Shut down"
    FORCE_OFF = "force_off", "Force off"
    REBOOT = "reboot", "Reboot"
    RESET = "reset", "Reset"
    SUSPEND = "suspend", "Suspend"
    RESUME = "resume", "Resume"
    SAVE = "save", "Save state"
    AUTOSTART_ON = "autostart_on", "Autostart on"
    AUTOSTART_OFF = "autostart_off", "Autostart off"
    DELETE = "delete", "Delete"
    MIGRATE = "migrate", "Migrate"
    MAINTENANCE = "maintenance", "Enter maintenance"


class JobQuerySet(models.QuerySet):
    def active(self):
        return self.filter(status__in=ACTIVE_STATUSES)

    def terminal(self):
        return self.filter(status__in=TERMINAL_STATUSES)


class Job(models.Model):
    """One operation on one VM, carried out by a Celery worker, with who asked and how it ended.

    Status only moves through vms.jobs.job_transition (see TRANSITIONS). At most one active job
    per VM, enforced by the database. VM and host names are kept so history survives deletion.
    """

    kind = models.CharField(max_length=24, choices=JobKind.choices, db_index=True)
    vm = models.ForeignKey(VM, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    vm_uuid = models.UUIDField(null=True, blank=True, db_index=True)  # None for host-wide jobs
    vm_name = models.CharField(max_length=255, blank=True)
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

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-queued_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["vm_uuid"],
                condition=models.Q(status__in=["queued", "running"]),
                name="one_active_job_per_vm",
            ),
        ]
        indexes = [models.Index(fields=["vm_uuid", "-queued_at"]), models.Index(fields=["status", "-queued_at"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.vm_name or self.host_name} (job {self.pk})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

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


class ConsoleSession(models.Model):
    """One opening of a VM's console through the console proxy: who, which VM, from where, how long.

    Written by the proxy when it takes a ticket and again when the connection ends. Names are kept
    so the record survives the deletion of the user or the VM.
    """

    user = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="virtfleet_console_sessions"
    )
    username = models.CharField(max_length=150)
    vm = models.ForeignKey(VM, null=True, blank=True, on_delete=models.SET_NULL, related_name="console_sessions")
    vm_uuid = models.UUIDField(db_index=True)
    vm_name = models.CharField(max_length=255)
    host_name = models.CharField(max_length=100, blank=True)
    target = models.CharField("VNC endpoint", max_length=300, blank=True)
    client_address = models.GenericIPAddressField(null=True, blank=True)
    opened_at = models.DateTimeField(default=timezone.now, db_index=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=300, blank=True)
    bytes_in = models.BigIntegerField("bytes from the VM", default=0)
    bytes_out = models.BigIntegerField("bytes to the VM", default=0)

    class Meta:
        ordering = ["-opened_at", "-id"]
        indexes = [models.Index(fields=["vm_uuid", "-opened_at"])]

    def __str__(self) -> str:
        return f"console of {self.vm_name} by {self.username} at {self.opened_at:%Y-%m-%d %H:%M:%S}"

    @property
    def is_open(self) -> bool:
        return self.closed_at is None

    @property
    def duration(self):
        return (self.closed_at - self.opened_at) if self.closed_at else None
