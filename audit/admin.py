from django.contrib import admin

from .models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the audit log cannot be edited or deleted from the admin (nor anywhere in the UI)."""

    list_display = ("at", "username", "ip", "action", "outcome", "target_name", "host_name", "vm_name")
    list_filter = ("outcome", "action")
    search_fields = ("username", "action", "target_name", "vm_name", "host_name", "message")
    date_hierarchy = "at"

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
