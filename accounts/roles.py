"""The three roles, as Django groups with a fixed set of permissions, given for the whole fleet.

- viewer: sees hosts, VMs, jobs and (their part of) the audit log.
- operator: viewer + VM operations, consoles, migration, and creating and changing VMs.
- admin: operator + hosts (add, edit, resync, remove, maintenance), users, roles and object
  permissions (the admin site), the whole audit log.

For chosen hosts or VMs only, give the same permissions as django-guardian object permissions
(admin site → Hosts or VMs → the object → "Object permissions"): ``view_host``, ``operate_vms``,
``console_vms``, ``migrate_vms``, ``configure_vms`` (create VMs there, change their hardware),
``manage_host``, ``maintain_host`` on a host (covering its VMs), or ``view_vm``, ``operate_vm``,
``console_vm``, ``migrate_vm``, ``change_vm`` on a VM.
"""

from __future__ import annotations

VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
ROLES = (VIEWER, OPERATOR, ADMIN)

_VIEW = ["hosts.view_host", "vms.view_vm"]
_OPERATE = ["vms.operate_vm", "vms.console_vm", "vms.migrate_vm", "vms.change_vm"]
_ADMIN = [
    "hosts.manage_host",
    "hosts.maintain_host",
    "audit.view_auditevent",
    # the admin site: users and their roles; tokens (see, revoke)
    "auth.view_user", "auth.add_user", "auth.change_user", "auth.delete_user",
    "auth.view_group",
    "knox.view_authtoken", "knox.delete_authtoken",
]  # fmt: skip

ROLE_PERMISSIONS: dict[str, list[str]] = {
    VIEWER: _VIEW,
    OPERATOR: _VIEW + _OPERATE,
    ADMIN: _VIEW + _OPERATE + _ADMIN,
}


def ensure_roles(apps) -> None:
    """Create the role groups and give each exactly its permissions (idempotent)."""
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        wanted = []
        for perm in perms:
            app_label, codename = perm.split(".")
            found = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
            if found is None:
                raise LookupError(f"role {role}: permission {perm} does not exist (is its app migrated?)")
            wanted.append(found)
        group.permissions.set(wanted)


def ensure_roles_after_migrate(sender, app_config=None, apps=None, using="default", **kwargs) -> None:
    from django.apps import apps as global_apps

    if app_config is None or app_config.label != "accounts":
        return  # once per migrate, after this app: every permission exists by then
    ensure_roles(apps or global_apps)
