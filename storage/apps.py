from django.apps import AppConfig


class StorageConfig(AppConfig):
    """Storage pools and volumes of every host: inventory, operations as jobs, uploads and downloads."""

    name = "storage"
    verbose_name = "Storage"

    def ready(self):
        from core import access

        from . import inventory, kinds, pages  # noqa: F401  (the storage job kinds)
        from .models import StoragePool, Volume

        access.register_model("pool", StoragePool, on_host=True)
        access.register_model("volume", Volume, on_host=True)
        inventory.register()
        pages.register()
