from django.contrib import admin
from guardian.admin import GuardedModelAdmin

from core.admin import ReadOnlyGuardedAdmin

from .models import Host


@admin.register(Host)
class HostAdmin(ReadOnlyGuardedAdmin, GuardedModelAdmin):
    """Read-only rows; their "Object permissions" page gives users rights on one host (and its VMs).

    Hosts are added and edited through the Hosts pages; credentials are never shown here.
    """

    list_display = ("name", "uri", "state", "maintenance", "last_seen")
    list_filter = ("state", "maintenance")
    search_fields = ("name", "uri", "hostname")
    exclude = ("sasl_password", "capabilities_xml")
