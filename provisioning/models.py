from django.db import models
from django.utils import timezone

from virt.capabilities import HostCapabilities as Caps


class HostCapabilities(models.Model):
    """What a host can run, as its libvirt says (capabilities and domain capabilities: arches,
    machine types, firmware, disk buses, graphics), read with every full sync. The New VM form
    offers only what is in here."""

    host = models.OneToOneField("hosts.Host", on_delete=models.CASCADE, related_name="vm_capabilities")
    data = models.JSONField(default=dict, blank=True)  # virt.capabilities.HostCapabilities.to_dict()
    reported = models.BooleanField(default=False)  # False: the driver has no domain capabilities (test)
    read_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "host capabilities"

    def __str__(self) -> str:
        return f"capabilities of {self.host_id}"

    @property
    def caps(self) -> Caps:
        return Caps.from_dict(self.data) if self.data else Caps(guests=(), domains=(), reported=False)


class SSHKey(models.Model):
    """A user's saved SSH public key, offered for the cloud-init of the VMs they create."""

    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="ssh_keys")
    name = models.CharField(max_length=100)
    public_key = models.TextField()
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["user", "name"], name="one_key_name_per_user")]

    def __str__(self) -> str:
        return self.name

    @property
    def fingerprint(self) -> str:
        """SHA256 fingerprint as ssh-keygen -l prints it."""
        import base64
        import hashlib

        try:
            blob = base64.b64decode(self.public_key.split()[1])
        except (IndexError, ValueError):
            return ""
        return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
