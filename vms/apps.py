from django.apps import AppConfig


class VmsConfig(AppConfig):
    name = "vms"
    verbose_name = "Virtual machines"

    def ready(self):
        from . import worker  # noqa: F401  (connects the Celery worker signals)
