from django.apps import AppConfig


class JobsConfig(AppConfig):
    """The job engine: every long operation of every app runs as a job of a registered kind."""

    name = "jobs"
    verbose_name = "Jobs"

    def ready(self):
        from core import access

        from . import heartbeat, tasks  # noqa: F401  (worker signals; the tasks the dispatcher names)
        from .models import Job

        access.register_model("job", Job)
