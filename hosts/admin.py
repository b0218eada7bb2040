from django.contrib import admin

from .models import Host


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    """Read-mostly view for administrators; hosts are added and edited through the Hosts pages."""

    list_display = ("name", "uri", "state", "maintenance", "last_seen")
    list_filter = ("state", "maintenance")
    search_fields = ("name", "uri", "hostname")
    exclude = ("sasl_password",)
    readonly_fields = [f.name for f in Host._meta.fields if f.name not in ("sasl_password",)]

    def has_add_permission(self, request):
        return False
