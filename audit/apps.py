from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit log"

    def ready(self):
        from core.access import refused

        from . import signals  # noqa: F401  (sign-ins and permission changes are recorded)
        from .services import record_access_refusal

        refused.connect(record_access_refusal, dispatch_uid="virtfleet-audit-refusals")
