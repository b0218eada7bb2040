from django.contrib import admin
from guardian.admin import GuardedModelAdmin

from core.admin import ReadOnlyGuardedAdmin

from .models import VM


@admin.register(VM)
class VMAdmin(ReadOnlyGuardedAdmin, GuardedModelAdmin):
    """Read-only: VM rows are written only from what libvirt reports. Their "Object permissions"
    page gives users rights on one VM."""

    list_display = ("name", "uuid", "host", "state", "gone_at")
    list_filter = ("state", "host")
    search_fields = ("name", "uuid")
    list_select_related = ("host",)
    exclude = ("xml",)
