from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class CoreConfig(AppConfig):
    """Helpers every app shares (errors, access, live events, API plumbing); no models of its own."""

    name = "core"
    verbose_name = "Virtfleet core"


class VirtfleetAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with Virtfleet's site (administrators only)."""

    default = False

    default_site = "core.admin.VirtfleetAdminSite"
