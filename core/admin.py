"""The admin site: for administrators only (the admin role or superusers), whatever is_staff says.

It is where users get roles and where object permissions on chosen hosts and VMs are given
(django-guardian's "Object permissions" page of each host and VM).
"""

from django.contrib import admin

from core import access


class VirtfleetAdminSite(admin.AdminSite):
    site_header = "Virtfleet administration"
    site_title = "Virtfleet administration"
    index_title = "Users, roles, permissions and records"

    def has_permission(self, request):
        return access.may(request.user, access.ADMINISTER)


class ReadOnlyGuardedAdmin:
    """For rows only Virtfleet writes (hosts, VMs): nothing to edit here, but their "Object
    permissions" page (django-guardian, which asks for change permission) is open to admins."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return access.may(request.user, access.ADMINISTER)

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields if f.name not in (self.exclude or ())]

    def save_model(self, request, obj, form, change):
        pass  # never write back a row the inventory owns

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra = {"show_save": False, "show_save_and_continue": False, "show_save_and_add_another": False}
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})
