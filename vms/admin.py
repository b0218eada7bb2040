from django.contrib import admin

from .models import VM


@admin.register(VM)
class VMAdmin(admin.ModelAdmin):
    """Read-only: VM rows are written only from what libvirt reports."""

    list_display = ("name", "uuid", "host", "state", "gone_at")
    list_filter = ("state", "host")
    search_fields = ("name", "uuid")
    list_select_related = ("host",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
