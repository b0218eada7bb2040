from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """The wiring: settings, URLs, ASGI routing, the Celery app and what spans every app."""

    name = "dashboard"
    verbose_name = "Virtfleet"

    def ready(self):
        from . import tasks  # noqa: F401  (registers the history pruning task)
