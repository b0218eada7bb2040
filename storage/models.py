"""Storage pools and their volumes, as every host's libvirt last reported them.

Rows are written only from what libvirt reports (storage.inventory), never guessed; a pool or a
volume the host no longer has loses its row. Both belong to a host: the host's rights cover them.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class PoolState(models.TextChoices):
    ACTIVE = "active", "Active"
    INACTIVE = "inactive", "Inactive"
    BUILDING = "building", "Building"
    DEGRADED = "degraded", "Degraded"
    INACCESSIBLE = "inaccessible", "Inaccessible"
    UNKNOWN = "unknown", "Unknown"


class StoragePool(models.Model):
    """A libvirt storage pool of one host (dir, fs, netfs, logical, ...)."""

    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="pools")
    name = models.CharField(max_length=255)
    uuid = models.CharField(max_length=36, blank=True)
    type = models.CharField(max_length=32)
    state = models.CharField(max_length=16, choices=PoolState.choices, default=PoolState.UNKNOWN, db_index=True)
    persistent = models.BooleanField(default=True)
    autostart = models.BooleanField(default=False)
    capacity = models.BigIntegerField(default=0)  # bytes
    allocation = models.BigIntegerField(default=0)
    available = models.BigIntegerField(default=0)
    target_path = models.CharField(max_length=1024, blank=True)
    source_host = models.CharField(max_length=255, blank=True)
    source_dir = models.CharField(max_length=1024, blank=True)
    source_device = models.CharField(max_length=1024, blank=True)
    source_name = models.CharField(max_length=255, blank=True)
    source_format = models.CharField(max_length=32, blank=True)
    xml = models.TextField(blank=True)
    observed_at = models.DateTimeField(default=timezone.now)
    # Bumped on every change browsers see; they drop pushed pools older than what they show.
    version = models.PositiveBigIntegerField(default=1)

    class Meta:
        ordering = ["host__name", "name"]
        constraints = [models.UniqueConstraint(fields=["host", "name"], name="one_pool_name_per_host")]
        indexes = [models.Index(fields=["name", "id"]), models.Index(fields=["type", "name"])]

    def __str__(self) -> str:
        return f"{self.name} on {self.host.name}" if self.host_id else self.name

    def audit_target(self) -> dict:
        return {"target_type": "pool", "target_id": str(self.pk or ""), "target_name": self.name,
                "host_ref": self.host_id, "host_name": self.host.name if self.host_id else ""}  # fmt: skip

    @property
    def is_active(self) -> bool:
        return self.state == PoolState.ACTIVE

    @property
    def used_percent(self) -> int:
        return round(100 * self.allocation / self.capacity) if self.capacity else 0

    @property
    def source_label(self) -> str:
        """Where the pool's storage comes from, in one line (for tables)."""
        if self.source_host:
            return f"{self.source_host}:{self.source_dir}" if self.source_dir else self.source_host
        return self.source_device or self.source_name or ""


class Volume(models.Model):
    """A volume of a storage pool (an image file, a logical volume...)."""

    pool = models.ForeignKey(StoragePool, on_delete=models.CASCADE, related_name="volumes")
    name = models.CharField(max_length=255)
    key = models.CharField(max_length=1024, blank=True)
    path = models.CharField(max_length=1024, db_index=True)
    type = models.CharField(max_length=16, blank=True)  # file, block, dir, network...
    format = models.CharField(max_length=32, blank=True)  # raw, qcow2, iso...
    capacity = models.BigIntegerField(default=0)  # bytes the guest sees
    allocation = models.BigIntegerField(default=0)  # bytes it takes on the host
    physical = models.BigIntegerField(default=0)  # bytes of the file itself (a download or copy moves these)
    backing_path = models.CharField(max_length=1024, blank=True)
    backing_format = models.CharField(max_length=32, blank=True)
    observed_at = models.DateTimeField(default=timezone.now)
    version = models.PositiveBigIntegerField(default=1)
    # A failed job made this volume and could not remove it (its host did not answer): a partial
    # volume, shown as such and removed by the host's next full sync.
    left_by = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["pool", "name"]
        constraints = [models.UniqueConstraint(fields=["pool", "name"], name="one_volume_name_per_pool")]

    def __str__(self) -> str:
        return self.name

    @property
    def length(self) -> int:
        return self.physical or self.capacity

    @property
    def host_id(self) -> int:  # the host's rights cover it (core.access, on_host)
        return self.pool.host_id

    def audit_target(self) -> dict:
        pool = self.pool
        return {"target_type": "volume", "target_id": str(self.pk or ""), "target_name": f"{pool.name}/{self.name}",
                "host_ref": pool.host_id, "host_name": pool.host.name if pool.host_id else ""}  # fmt: skip


class HostStorage(models.Model):
    """What a host's libvirt says of its storage: the pool types it supports (its pool
    capabilities), read with every full sync; forms offer only those."""

    host = models.OneToOneField("hosts.Host", on_delete=models.CASCADE, related_name="storage")
    pool_types = models.JSONField(default=list, blank=True)
    unsupported_types = models.JSONField(default=list, blank=True)
    volume_formats = models.JSONField(default=dict, blank=True)  # pool type -> formats it can create
    reported = models.BooleanField(default=True)  # False: the host does not report them (test driver)

    def __str__(self) -> str:
        return f"storage of {self.host_id}"
