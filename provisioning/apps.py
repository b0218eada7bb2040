from django.apps import AppConfig


class ProvisioningConfig(AppConfig):
    """VMs born and changed in Virtfleet: the New VM form (OS presets from osinfo-db, ISO, imported
    disk, cloud image with cloud-init, or XML), the XML editor and the hardware page, each a job."""

    name = "provisioning"
    verbose_name = "Provisioning"

    def ready(self):
        from . import clones, inventory, kinds, pages, templates  # noqa: F401  (the provisioning job kinds)

        inventory.register()
        pages.register()
