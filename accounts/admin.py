from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from knox.models import AuthToken

from . import services

admin.site.unregister(AuthToken)  # knox's admin mints tokens for anyone and shows them in a message


@admin.register(AuthToken)
class TokenAdmin(admin.ModelAdmin):
    """Every user's API tokens, for administrators to see and revoke (never to create or read)."""

    list_display = ("token_key", "name", "user", "created", "expiry")
    list_select_related = ("user", "info")
    search_fields = ("token_key", "user__username", "info__name")
    fields = ("token_key", "user", "created", "expiry")
    readonly_fields = fields
    actions = ["revoke"]

    @admin.display(description="name")
    def name(self, token):
        return getattr(getattr(token, "info", None), "name", "")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.action(description="Revoke the selected tokens", permissions=["delete"])
    def revoke(self, request, queryset):
        for token in queryset.select_related("user"):
            services.token_revoke(user=token.user, token=token, by=request.user)
        self.message_user(request, "Revoked.")

    def delete_model(self, request, obj):
        services.token_revoke(user=obj.user, token=obj, by=request.user)


admin.site.unregister(User)


@admin.register(User)
class VirtfleetUserAdmin(UserAdmin):
    """Users and their roles (groups). Only a superuser may make or change a superuser."""

    list_display = ("username", "email", "is_active", "is_superuser", "roles", "last_login")
    list_filter = ("is_active", "is_superuser", "groups")

    @admin.display(description="roles")
    def roles(self, user):
        return ", ".join(g.name for g in user.groups.all()) or "—"

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("groups")

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            readonly += ["is_superuser", "user_permissions"]
        return readonly

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_delete_permission(request, obj)
