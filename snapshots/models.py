from django.db import models
from django.utils import timezone


class MemoryMode(models.TextChoices):
    INTERNAL = "internal", "in the disk image"
    EXTERNAL = "external", "in a file"
    NO = "no", "none (disk only)"


class Snapshot(models.Model):
    """A snapshot of a VM as libvirt lists it (rewritten from libvirt after every snapshot job, a
    revert event and each full sync; never guessed). ``size`` is Virtfleet's own figure: libvirt
    gives none for internal snapshots (see ``size_kind``)."""

    vm = models.ForeignKey("vms.VM", on_delete=models.CASCADE, related_name="snapshots")
    name = models.CharField(max_length=255)
    parent = models.CharField(max_length=255, blank=True)  # the parent snapshot's name ("" = a root)
    description = models.TextField(blank=True)
    state = models.CharField(max_length=16, blank=True)  # running, paused, shutoff, disk-snapshot
    created = models.DateTimeField(null=True, blank=True)
    memory = models.CharField(max_length=16, choices=MemoryMode.choices, default=MemoryMode.NO)
    memory_file = models.CharField(max_length=1024, blank=True)
    disks = models.JSONField(default=list, blank=True)  # [{"name": "vda", "mode": "internal", "file": ""}]
    current = models.BooleanField(default=False)
    # bytes; "taken": the growth of the qcow2 disks' allocation measured around the create (internal);
    # "files": the allocation of its overlay and memory files (external); "" = not known
    size = models.BigIntegerField(null=True, blank=True)
    size_kind = models.CharField(max_length=8, blank=True)
    read_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created", "name"]
        constraints = [models.UniqueConstraint(fields=["vm", "name"], name="snapshot_unique_per_vm")]

    def __str__(self) -> str:
        return f"{self.name} of {self.vm_id}"

    @property
    def external(self) -> bool:
        return self.memory == MemoryMode.EXTERNAL or any(d.get("mode") == "external" for d in self.disks or ())

    @property
    def disk_only(self) -> bool:
        return self.state == "disk-snapshot"
