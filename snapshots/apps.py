from django.apps import AppConfig


class SnapshotsConfig(AppConfig):
    """Snapshots of VMs: mirrored from libvirt per VM, taken, reverted and deleted as jobs."""

    name = "snapshots"
    verbose_name = "Snapshots"

    def ready(self):
        from . import inventory, kinds, pages  # noqa: F401  (the snapshot job kinds)

        inventory.register()
        pages.register()
