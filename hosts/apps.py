from django.apps import AppConfig


class HostsConfig(AppConfig):
    name = "hosts"
    verbose_name = "Hosts"

    def ready(self):
        from core import access

        from . import tasks  # noqa: F401  (registers its Celery tasks: services send them by name)
        from .models import Host

        access.register_model("host", Host)
