from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Virtfleet"


class VirtfleetAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with Virtfleet's site (administrators only)."""

    default = False

    default_site = "dashboard.admin.VirtfleetAdminSite"
