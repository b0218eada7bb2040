"""Audit events for what Django itself does on Virtfleet's behalf: signing in and out, and changes to
users, roles and permissions (made in the admin site, which has no services of ours to call)."""

from __future__ import annotations

from axes.signals import user_locked_out
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from django.dispatch import receiver
from guardian.models import GroupObjectPermission, UserObjectPermission

from core.net import client_ip

from .models import Outcome
from .services import audit_record, audit_refusal

User = get_user_model()
_WATCHED_USER_FIELDS = ("is_active", "is_staff", "is_superuser", "username")


@receiver(user_logged_in)
def _logged_in(sender, request, user, **kwargs):
    audit_record(action="login", user=user, ip=client_ip(request) if request else None, target=user)


@receiver(user_logged_out)
def _logged_out(sender, request, user, **kwargs):
    if user is not None:
        audit_record(action="logout", user=user, ip=client_ip(request) if request else None, target=user)


@receiver(user_login_failed)
def _login_failed(sender, credentials, request=None, **kwargs):
    username = str((credentials or {}).get("username", ""))[:150]
    audit_refusal(
        user=None,
        username="anonymous",
        action="login.failed",
        target_type="user",
        target_name=username,
        message=f"wrong user name or password for {username!r}",
        details={"username": username},
    )


@receiver(user_locked_out)
def _locked_out(sender, request, username, ip_address, **kwargs):
    audit_refusal(
        user=None,
        username="anonymous",
        target_type="user",
        target_name=str(username)[:150],
        action="login.locked",
        message=f"too many failed sign-ins for {username!r} from {ip_address}: locked out for a while",
        details={"username": str(username)[:150]},
    )


# --- users, roles, permissions ------------------------------------------------------------------------
@receiver(pre_save, sender=User)
def _remember_user(sender, instance, **kwargs):
    if instance.pk:
        before = User.objects.filter(pk=instance.pk).values(*_WATCHED_USER_FIELDS).first()
        instance._audit_before = before or {}


@receiver(post_save, sender=User)
def _user_saved(sender, instance, created, update_fields=None, **kwargs):
    if created:
        audit_record(action="user.add", target=instance, target_type="user", details=_user_flags(instance))
        return
    before = getattr(instance, "_audit_before", {})
    changed = {f: getattr(instance, f) for f in _WATCHED_USER_FIELDS if before.get(f) != getattr(instance, f)}
    if changed:
        audit_record(action="user.update", target=instance, target_type="user", details={"changed": changed})


@receiver(post_delete, sender=User)
def _user_deleted(sender, instance, **kwargs):
    audit_record(action="user.remove", target=instance, target_type="user")


def _user_flags(user) -> dict:
    return {f: getattr(user, f) for f in _WATCHED_USER_FIELDS}


def _names(model, pks) -> list[str]:
    if not pks:
        return []
    if model is Group or model is User:
        field = "name" if model is Group else "username"
        return sorted(model.objects.filter(pk__in=pks).values_list(field, flat=True))
    return sorted(f"{p.content_type.app_label}.{p.codename}" for p in model.objects.filter(pk__in=pks))


@receiver(m2m_changed, sender=User.groups.through)
@receiver(m2m_changed, sender=User.user_permissions.through)
@receiver(m2m_changed, sender=Group.permissions.through)
def _memberships_changed(sender, instance, action, reverse, model, pk_set, **kwargs):
    """Roles (groups) given to or taken from users, permissions given to users or groups."""
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    kind = "group" if isinstance(instance, Group) else "user"
    what = str(model._meta.verbose_name_plural).replace(" ", "_")  # groups, permissions, users
    verb = {"post_add": "grant", "post_remove": "revoke", "post_clear": "revoke"}[action]
    audit_record(
        action=f"{kind}.{what}.{verb}",
        target=instance,
        target_type=kind,
        target_name=getattr(instance, "name", "") if kind == "group" else instance.get_username(),
        details={what: _names(model, pk_set) if pk_set else "all"},
    )


@receiver(post_save, sender=UserObjectPermission)
@receiver(post_save, sender=GroupObjectPermission)
@receiver(post_delete, sender=UserObjectPermission)
@receiver(post_delete, sender=GroupObjectPermission)
def _object_permission_changed(sender, instance, created=None, **kwargs):
    if created is False:
        return  # re-saved, unchanged
    who = instance.user.get_username() if sender is UserObjectPermission else f"group {instance.group.name}"
    obj = instance.content_object
    perm = f"{instance.permission.content_type.app_label}.{instance.permission.codename}"
    audit_record(
        action="permission.grant" if created else "permission.revoke",
        target=obj,
        message=f"{perm} {'to' if created else 'from'} {who}",
        details={"permission": perm, "holder": who},
    )


__all__ = ["Outcome"]
