from django.db import models
from django.utils import timezone


class Outcome(models.TextChoices):
    OK = "ok", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    REFUSED = "refused", "Refused"


class AuditEvent(models.Model):
    """One thing someone did or tried: who, what, to which host or VM, when, from where, how it ended.

    Written only by audit.services (from the services that act, on commit), never edited or
    deleted from the UI or the admin. Names are copied so the record outlives users, hosts and VMs.
    """

    at = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    username = models.CharField(max_length=150, blank=True)  # "system" for Virtfleet itself
    ip = models.GenericIPAddressField("from", null=True, blank=True)
    action = models.CharField(max_length=64, db_index=True)  # e.g. vm.reboot, host.add, console.open
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.OK, db_index=True)
    message = models.CharField(max_length=500, blank=True)
    target_type = models.CharField(max_length=16, blank=True)  # vm, host, job, token, user, group
    target_id = models.CharField(max_length=64, blank=True)
    target_name = models.CharField(max_length=255, blank=True)
    host_ref = models.BigIntegerField("host id", null=True, blank=True, db_index=True)
    host_name = models.CharField(max_length=100, blank=True)
    vm_uuid = models.UUIDField(null=True, blank=True, db_index=True)
    vm_name = models.CharField(max_length=255, blank=True)
    details = models.JSONField(default=dict, blank=True)  # never secrets

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["action", "-at"]),
            models.Index(fields=["username", "-at"]),
            models.Index(fields=["outcome", "-at"]),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.username or '?'} {self.action} {self.target_name} ({self.outcome})"
