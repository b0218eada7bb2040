from django.db import models
from django.utils import timezone

from core.crypto import EncryptedTextField


class HostState(models.TextChoices):
    """What Virtfleet last observed about its connection to the host."""

    PENDING = "pending", "Not yet connected"
    CONNECTED = "connected", "Connected"
    UNREACHABLE = "unreachable", "Unreachable"
    ERROR = "error", "Error"


class MaintenanceState(models.TextChoices):
    """Operator-set service mode, independent of reachability."""

    NONE = "", "In service"
    ENTERING = "entering", "Entering maintenance"
    ON = "on", "In maintenance"


class Host(models.Model):
    """A libvirt host Virtfleet manages, and what its libvirt last reported about the node.

    Reachability (``state``) is observed; maintenance is chosen by an operator. ``status`` combines
    both into the single word the UI shows.
    """

    name = models.CharField(max_length=100, unique=True)
    uri = models.CharField("libvirt URI", max_length=1024, unique=True)
    ssh_key_path = models.CharField(
        "SSH private key file", max_length=1024, blank=True, help_text="For qemu+ssh: a key readable by Virtfleet."
    )
    sasl_username = models.CharField("SASL user", max_length=150, blank=True)
    # Encrypted at rest (VIRTFLEET_SECRETS_KEY); never shown back, only whether one is set.
    sasl_password = EncryptedTextField("SASL password", blank=True)
    peer_uri = models.CharField(
        "URI for other hosts",
        max_length=1024,
        blank=True,
        help_text="How other hosts' libvirtd reach this one for peer-to-peer migration (default: the URI above).",
    )
    migration_address = models.CharField(
        "migration address",
        max_length=255,
        blank=True,
        help_text="Address of this host on the migration network (default: its host name).",
    )

    state = models.CharField(max_length=16, choices=HostState.choices, default=HostState.PENDING, db_index=True)
    maintenance = models.CharField(max_length=16, choices=MaintenanceState.choices, default="", blank=True)
    last_error = models.TextField(blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    last_sync = models.DateTimeField(null=True, blank=True)
    state_changed = models.DateTimeField(default=timezone.now)

    # Facts reported by the node (refreshed on every full sync)
    hostname = models.CharField(max_length=255, blank=True)
    host_uuid = models.CharField(max_length=36, blank=True)
    arch = models.CharField(max_length=32, blank=True)
    cpu_model = models.CharField(max_length=128, blank=True)
    cpu_vendor = models.CharField(max_length=64, blank=True)
    cpus = models.PositiveIntegerField(default=0)
    cpu_mhz = models.PositiveIntegerField(default=0)
    memory_bytes = models.BigIntegerField(default=0)
    free_memory_bytes = models.BigIntegerField(default=0)
    hypervisor_type = models.CharField(max_length=32, blank=True)
    hypervisor_version = models.CharField(max_length=32, blank=True)
    libvirt_version = models.CharField(max_length=32, blank=True)
    capabilities_xml = models.TextField(blank=True)

    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    # Bumped on every change browsers see (hosts.events.host_changed); they drop older events.
    version = models.PositiveBigIntegerField(default=1)

    class Meta:
        ordering = ["name"]
        # Given fleet-wide through a role (accounts/roles.py) or on one host (django-guardian);
        # the *_vms ones cover every VM on the host, including VMs that migrate onto it.
        permissions = [
            ("manage_host", "Add, edit, resync and remove hosts"),
            ("maintain_host", "Put hosts into and out of maintenance"),
            ("operate_vms", "Operate the VMs on the host"),
            ("console_vms", "Open the consoles of the VMs on the host"),
            ("migrate_vms", "Migrate the VMs on the host"),
            ("configure_vms", "Create VMs on the host and change their definitions and hardware"),
        ]

    def __str__(self) -> str:
        return self.name

    def audit_target(self) -> dict:
        """How the audit log names this host."""
        return {"target_type": "host", "target_id": str(self.pk or ""), "target_name": self.name,
                "host_ref": self.pk, "host_name": self.name}  # fmt: skip

    @property
    def status(self) -> str:
        """One word for the UI: maintenance wins over connected; unreachable/error always show."""
        if self.state in (HostState.UNREACHABLE, HostState.ERROR):
            return self.state
        if self.maintenance == MaintenanceState.ON:
            return "maintenance"
        if self.maintenance == MaintenanceState.ENTERING:
            return "entering_maintenance"
        return self.state

    @property
    def migration_uri(self) -> str:
        """The libvirt URI a peer host's libvirtd uses to reach this host."""
        return self.peer_uri or self.uri

    @property
    def is_connected(self) -> bool:
        return self.state == HostState.CONNECTED

    @property
    def in_maintenance(self) -> bool:
        return self.maintenance != MaintenanceState.NONE

    @property
    def used_memory_bytes(self) -> int:
        return max(0, self.memory_bytes - self.free_memory_bytes)

    @property
    def memory_used_percent(self) -> int:
        return round(100 * self.used_memory_bytes / self.memory_bytes) if self.memory_bytes else 0
