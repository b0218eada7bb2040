from django.apps import AppConfig


class NetworksConfig(AppConfig):
    """Virtual networks of every host: inventory, DHCP leases and guest addresses, operations as jobs."""

    name = "networks"
    verbose_name = "Networks"

    def ready(self):
        from core import access

        from . import inventory, kinds, pages  # noqa: F401  (the network job kinds)
        from .models import Network

        access.register_model("network", Network, on_host=True)
        inventory.register()
        pages.register()
