from django.apps import AppConfig


class MigrationConfig(AppConfig):
    """Live migration of VMs between hosts, and host maintenance (evacuation)."""

    name = "migration"
    label = "migration"
    verbose_name = "Migration and maintenance"

    def ready(self):
        from . import kinds, pages  # noqa: F401  (registers the migrate and maintenance job kinds)

        pages.register()
