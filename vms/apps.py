from django.apps import AppConfig


class VmsConfig(AppConfig):
    """VMs: the inventory of domains across the fleet, their lifecycle operations and pages."""

    name = "vms"
    verbose_name = "Virtual machines"

    def ready(self):
        from core import access

        from . import inventory, kinds, pages  # noqa: F401  (job kinds of the lifecycle actions)
        from .models import VM

        access.register_model("vm", VM)
        inventory.register()
        pages.register()
