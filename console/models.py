"""Console sessions: the record of who watched which VM's screen, when, and how it ended."""

from django.db import models
from django.utils import timezone


class ConsoleSession(models.Model):
    """One opening of a VM's console through the console proxy: who, which VM, from where, how long.

    Written by the proxy when it takes a ticket and again when the connection ends. Names are kept
    so the record survives the deletion of the user or the VM.
    """

    user = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="virtfleet_console_sessions"
    )
    username = models.CharField(max_length=150)
    vm = models.ForeignKey("vms.VM", null=True, blank=True, on_delete=models.SET_NULL, related_name="console_sessions")
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
