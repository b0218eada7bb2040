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
    # Its disks as the domain XML says (virt.domains.DiskInfo fields): storage shows them with their
    # volumes, and refuses to delete a volume a VM uses.
    disks = models.JSONField(default=list, blank=True)
    # Its NICs as the domain XML says (virt.domains.InterfaceInfo fields): networks shows them with
    # the addresses the guest got.
    interfaces = models.JSONField(default=list, blank=True)
    # What its definition changes at the next boot, in words ("4 vCPUs (runs with 2)"): set when a
    # hardware change could not apply live, cleared when the VM stops.
    pending = models.JSONField(default=list, blank=True)
    # marked as a template (in the domain's metadata, so libvirt keeps it): never started, shown apart,
    # the source of new VMs
    template = models.BooleanField(default=False, db_index=True)

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
        # change_vm (Django's own): edit its definition and hardware
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

    def audit_target(self) -> dict:
        """How the audit log names this VM (and its host)."""
        return {
            "target_type": "vm",
            "target_id": str(self.uuid),
            "target_name": self.name,
            "vm_uuid": self.uuid,
            "vm_name": self.name,
            "host_ref": self.host_id,
            "host_name": self.host.name if self.host_id else "",
        }

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
