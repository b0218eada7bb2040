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


class TemplateImage(models.Model):
    """A copy of one disk of a template on another host, made once by a deploy there and the base
    of the VMs later deploys make on that host (on the template's own host its disk itself is the
    base). A copy is for one generation of the mark: a template marked again gets new copies, and a
    copy of an old generation goes once no volume is backed by it. ``complete`` is False while the
    copy is being made: such a row (and its volume) is a deploy's to remove if it does not finish."""

    template = models.ForeignKey("vms.VM", on_delete=models.CASCADE, related_name="template_images")
    target = models.CharField(max_length=16)  # the template's disk (vda)
    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="template_images")
    pool = models.CharField(max_length=255)
    volume = models.CharField(max_length=255)
    path = models.CharField(max_length=1024)
    format = models.CharField(max_length=32, default="qcow2")
    generation = models.CharField(max_length=64)
    size = models.BigIntegerField(default=0)  # bytes copied
    complete = models.BooleanField(default=False)
    made_by = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    made_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["template", "host", "target"]
        constraints = [
            models.UniqueConstraint(fields=["host", "pool", "volume"], name="one_template_image_per_volume"),
        ]
        indexes = [models.Index(fields=["template", "host", "generation"])]

    def __str__(self) -> str:
        return f"{self.volume} on {self.host_id}"
