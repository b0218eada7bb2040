"""Who may see and do what — the one place pages, API, sockets, console tickets and services ask.

Rights come from two places, both plain Django permissions:
- a role (accounts/roles.py: the groups viewer, operator, admin) gives its permissions for the
  whole fleet;
- django-guardian object permissions give them on one host (then they cover every VM on it,
  including VMs that migrate onto it later) or on one VM.
Superusers may everything. Any permission on a host or VM lets its holder see it.

``may`` answers, ``require`` refuses with a Forbidden that says what to ask for (and records the
refusal in the audit log), ``visible_*`` filter querysets so lists, counts and totals only hold
what the user may see, and ``Visibility`` filters the live events a socket receives.

``user=None`` stands for Virtfleet itself (a worker, the listener, a management command): it may
everything. Requests always carry a user (AnonymousUser when signed out), never None.

This module sits below every app: it imports none of them. Each app registers the models rights
apply to (``register_model("host", Host)`` in its AppConfig.ready), and refusals are announced on
the ``refused`` signal, which the audit log records.
"""

from __future__ import annotations

import time
import uuid as uuidlib
from dataclasses import dataclass, field

from django.db.models import Q, QuerySet
from django.dispatch import Signal

from core.errors import Forbidden

# Sent on every refusal: user, action ("<kind>.<verb>"), target (or None), message, details, ip.
refused = Signal()

# --- the models rights apply to, registered by their apps -------------------------------------------------
_MODELS: dict[str, type] = {}
_ON_HOST: set[str] = set()  # kinds judged by the rights on their host (pools, volumes, networks)


def register_model(kind: str, model: type, *, on_host: bool = False) -> None:
    """Make ``model`` a kind access knows ("host", "vm", "job"): objects of it can be asked about.

    ``on_host``: an object of it (a storage pool, a volume) lives on one host, and the rights on that
    host decide — see it with view_host, change it with manage_host. It must have ``host_id``."""
    _MODELS[kind] = model
    model.access_kind = kind  # type: ignore[attr-defined]
    if on_host:
        _ON_HOST.add(kind)


def _model(kind: str):
    try:
        return _MODELS[kind]
    except KeyError:
        raise LookupError(f"access: no model registered as {kind!r} (is its app installed?)") from None


# --- actions --------------------------------------------------------------------------------------------
VIEW = "view"  # see a host, VM or job (and, for a host, its VMs)
OPERATE = "operate"  # VM lifecycle operations (start, shut down, ... delete), cancel them
CONSOLE = "console"  # open a VM's console, see its console sessions
MIGRATE = "migrate"  # migrate a VM, cancel or switch a migration to post-copy
CONFIGURE = "configure"  # create VMs (on a host), change a VM's definition and hardware
MANAGE = "manage"  # add (no object), edit, resync, remove hosts
MAINTAIN = "maintain"  # put a host into and out of maintenance
CANCEL = "cancel"  # cancel a job: needs the right that started it
AUDIT_ALL = "audit_all"  # read the whole audit log, with addresses
ADMINISTER = "administer"  # the Django admin site: users, groups, object permissions

HOST_PERMS = {
    VIEW: "view_host",
    MANAGE: "manage_host",
    MAINTAIN: "maintain_host",
    OPERATE: "operate_vms",
    CONSOLE: "console_vms",
    MIGRATE: "migrate_vms",
    CONFIGURE: "configure_vms",
}
VM_PERMS = {VIEW: "view_vm", OPERATE: "operate_vm", CONSOLE: "console_vm", MIGRATE: "migrate_vm",
            CONFIGURE: "change_vm"}  # fmt: skip
GLOBAL_VIEW_PERMS = [f"hosts.{p}" for p in HOST_PERMS.values()] + [f"vms.{p}" for p in VM_PERMS.values()]

ROLE_FOR = {VIEW: "viewer", OPERATE: "operator", CONSOLE: "operator", MIGRATE: "operator", CONFIGURE: "operator"}
VERBS = {
    VIEW: "see",
    OPERATE: "operate",
    CONSOLE: "open the console of",
    MIGRATE: "migrate",
    CONFIGURE: "create or change VMs on",
    MANAGE: "change",
    MAINTAIN: "put into or out of maintenance",
    CANCEL: "cancel",
}
CACHE_SECONDS = 30.0  # how long one user's answers are reused (a request; a socket refreshes)


@dataclass(frozen=True)
class Visibility:
    """What one user may see: the whole fleet, or chosen hosts (with their VMs) and VMs."""

    everything: bool = False
    host_ids: frozenset[int] = field(default_factory=frozenset)
    vm_uuids: frozenset[str] = field(default_factory=frozenset)

    def allows_vm(self, *, uuid: str, host_id: int | None) -> bool:
        return self.everything or str(uuid) in self.vm_uuids or host_id in self.host_ids

    def allows_host(self, host_id: int | None) -> bool:
        return self.everything or host_id in self.host_ids

    def allows_job(self, *, vm_uuid, host_id: int | None, target_host_id: int | None = None) -> bool:
        if self.everything:
            return True
        if vm_uuid and str(vm_uuid) in self.vm_uuids:
            return True
        return host_id in self.host_ids or (target_host_id is not None and target_host_id in self.host_ids)

    def allows(self, audience: dict) -> bool:
        """May this user receive an event meant for ``audience`` ({"vm": uuid or None, "hosts": [ids]},
        what core.realtime sends beside every event)?"""
        if self.everything:
            return True
        vm = audience.get("vm")
        if vm and str(vm) in self.vm_uuids:
            return True
        return any(h in self.host_ids for h in audience.get("hosts") or ())


EVERYTHING = Visibility(everything=True)
NOTHING = Visibility()


# --- one user's rights ----------------------------------------------------------------------------------
class _Rights:
    """A user's answers, computed once and kept on the user object for a short while."""

    def __init__(self, user):
        from guardian.core import ObjectPermissionChecker

        self.user = user
        self.created = time.monotonic()
        self.checker = ObjectPermissionChecker(user)
        self._visibility: Visibility | None = None

    def fresh(self) -> bool:
        return time.monotonic() - self.created < CACHE_SECONDS

    def global_perm(self, perm: str) -> bool:
        return self.user.has_perm(perm)

    def object_perm(self, codename: str, obj) -> bool:
        return codename in self.checker.get_perms(obj)

    @property
    def visibility(self) -> Visibility:
        if self._visibility is None:
            self._visibility = self._compute_visibility()
        return self._visibility

    def _compute_visibility(self) -> Visibility:
        Host, VM = _model("host"), _model("vm")
        user = self.user
        if user.is_superuser or any(user.has_perm(perm) for perm in GLOBAL_VIEW_PERMS):
            return EVERYTHING
        hosts = Host.objects.filter(pk__in=_object_pks(user, Host, HOST_PERMS.values()))
        vms = VM.objects.filter(pk__in=_object_pks(user, VM, VM_PERMS.values()))
        return Visibility(
            host_ids=frozenset(hosts.values_list("pk", flat=True)),
            vm_uuids=frozenset(str(u) for u in vms.values_list("uuid", flat=True)),
        )


def _object_pks(user, model, codenames) -> list[int]:
    """Ids of the ``model`` rows on which ``user`` (or one of its groups) holds any of ``codenames``
    as a django-guardian object permission. Content types are matched by name, not by cached id."""
    from guardian.models import GroupObjectPermission, UserObjectPermission

    match = {
        "content_type__app_label": model._meta.app_label,
        "content_type__model": model._meta.model_name,
        "permission__codename__in": list(codenames),
    }
    keys = set(UserObjectPermission.objects.filter(user=user, **match).values_list("object_pk", flat=True))
    keys |= set(GroupObjectPermission.objects.filter(group__user=user, **match).values_list("object_pk", flat=True))
    return [int(k) for k in keys if k.isascii() and k.isdigit()]


def _active(user) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active)


def _rights(user) -> _Rights:
    rights = getattr(user, "_virtfleet_rights", None)
    if rights is None or not rights.fresh():
        rights = _Rights(user)
        try:
            user._virtfleet_rights = rights
        except AttributeError:  # an object that takes no attributes: no caching
            pass
    return rights


def forget(user) -> None:
    """Drop what was computed for ``user`` (after its permissions changed)."""
    for attr in ("_virtfleet_rights", "_perm_cache", "_user_perm_cache", "_group_perm_cache"):
        if user is not None and hasattr(user, attr):
            delattr(user, attr)


def drop_object_permissions(model, pks) -> None:
    """Delete the object permissions given on rows that are going away (a removed host and its
    VMs): the database may reuse their ids, and a permission must never pass to a newcomer."""
    from django.contrib.contenttypes.models import ContentType
    from guardian.models import GroupObjectPermission, UserObjectPermission

    keys = [str(pk) for pk in pks]
    if not keys:
        return
    content_type = ContentType.objects.get_for_model(model)
    for holder in (UserObjectPermission, GroupObjectPermission):
        holder.objects.filter(content_type=content_type, object_pk__in=keys).delete()


def visibility_for(user) -> Visibility:
    if user is None:
        return EVERYTHING
    if not _active(user):
        return NOTHING
    if user.is_superuser:
        return EVERYTHING
    return _rights(user).visibility


# --- may / require ---------------------------------------------------------------------------------------
def _kind(obj) -> str:
    if obj is None:
        return "fleet"
    kind = getattr(obj, "access_kind", None)
    if kind is None:
        raise TypeError(f"access: unknown kind of object {type(obj).__name__}")
    return kind


def _may_on_vm(user, action: str, *, vm_pk: int | None, uuid, host_id: int | None) -> bool:
    Host, VM = _model("host"), _model("vm")
    if action == VIEW:
        return visibility_for(user).allows_vm(uuid=str(uuid), host_id=host_id)
    if action not in VM_PERMS:
        return False
    rights = _rights(user)
    vm_perm, host_perm = VM_PERMS[action], HOST_PERMS[action]
    if rights.global_perm(f"vms.{vm_perm}") or rights.global_perm(f"hosts.{host_perm}"):
        return True
    if vm_pk is not None and rights.object_perm(vm_perm, VM(pk=vm_pk)):
        return True
    return host_id is not None and rights.object_perm(host_perm, Host(pk=host_id))


def _may_on_host(user, action: str, host_id: int | None) -> bool:
    Host = _model("host")
    if action == VIEW:
        return visibility_for(user).allows_host(host_id)
    codename = HOST_PERMS.get(action)
    if codename is None:
        return False
    rights = _rights(user)
    if rights.global_perm(f"hosts.{codename}"):
        return True
    return host_id is not None and rights.object_perm(codename, Host(pk=host_id))


def _may_on_job(user, action: str, job) -> bool:
    if action == VIEW:
        visibility = visibility_for(user)
        if visibility.allows_job(vm_uuid=job.vm_uuid, host_id=job.host_id, target_host_id=job.target_host_id):
            return True
        if not job.vm_id:
            return False
        # a job from before its VM moved onto a host this user may see: the VM's history is theirs
        host_id = _model("vm").objects.filter(pk=job.vm_id).values_list("host_id", flat=True).first()
        return host_id is not None and visibility.allows_vm(uuid=str(job.vm_uuid), host_id=host_id)
    if action not in (CANCEL, MIGRATE):
        return False
    # Acting on a job (cancel it, switch a migration to post-copy) takes the right that started it,
    # on what it started on: its kind says which (jobs.kinds).
    needed, on = job.required_right
    if on == "host":
        return _may_on_host(user, needed, job.host_id)
    return _may_on_vm(user, needed, vm_pk=job.vm_id, uuid=job.vm_uuid, host_id=job.host_id)


def may(user, action: str, obj=None) -> bool:
    """May ``user`` do ``action`` to ``obj`` (a Host, VM or Job; None for fleet-wide actions)?"""
    if user is None:
        return True
    if not _active(user):
        return False
    if user.is_superuser:
        return True
    kind = _kind(obj)
    if kind == "vm":
        return _may_on_vm(user, action, vm_pk=obj.pk, uuid=obj.uuid, host_id=obj.host_id)
    if kind == "host":
        return _may_on_host(user, action, obj.pk)
    if kind in _ON_HOST:
        return _may_on_host(user, action, obj.host_id)
    if kind == "job":
        return _may_on_job(user, action, obj)
    # fleet-wide: what the menus and the add/bulk forms ask
    rights = _rights(user)
    if action == MANAGE:
        return rights.global_perm("hosts.manage_host")
    if action == AUDIT_ALL:
        return rights.global_perm("audit.view_auditevent")
    if action == ADMINISTER:  # the admin role's mark: it manages the users
        return rights.global_perm("auth.change_user")
    if action in VM_PERMS and action != VIEW:
        # anywhere at all: is there any VM this user may do it to? (the bulk bar asks)
        if rights.global_perm(f"vms.{VM_PERMS[action]}") or rights.global_perm(f"hosts.{HOST_PERMS[action]}"):
            return True
        return _has_any_object_perm(user, VM_PERMS[action], HOST_PERMS[action])
    return action == VIEW


def _has_any_object_perm(user, vm_codename: str, host_codename: str) -> bool:
    Host, VM = _model("host"), _model("vm")
    return bool(_object_pks(user, VM, [vm_codename]) or _object_pks(user, Host, [host_codename]))


def refusal_message(user, action: str, obj=None) -> str:
    """What a refused user reads: what they may not do, and whom to ask for what."""
    kind = _kind(obj)
    verb = VERBS.get(action, action)
    if kind == "fleet":
        if action == MANAGE:
            return "You may not add hosts: ask an administrator for the admin role."
        if action in (AUDIT_ALL, ADMINISTER):
            return "Only administrators may do that: ask one for the admin role."
        return f"You may not {verb} VMs: ask an administrator for {ROLE_FOR.get(action, 'more')} rights."
    if kind == "vm":
        if action != VIEW and may(user, VIEW, obj):
            role = ROLE_FOR.get(action, "operator")
            return f"You may not {verb} VM {obj.name}: ask an administrator for {role} rights on it or its host."
        return "You may not see this VM: ask an administrator for access to it or its host."
    if kind == "host":
        if action != VIEW and may(user, VIEW, obj):
            return f"You may not {verb} host {obj.name}: ask an administrator for admin rights on it."
        return "You may not see this host: ask an administrator for access to it."
    if kind in _ON_HOST:
        if action != VIEW and may(user, VIEW, obj):
            return f"You may not {verb} {kind} {obj.name}: ask an administrator for admin rights on its host."
        return f"You may not see this {kind}: ask an administrator for access to its host."
    if action != VIEW and may(user, VIEW, obj):
        return (
            f"You may not {verb} job {obj.pk}: ask an administrator for the rights that started it "
            "(operator rights on its VM or host)."
        )
    return "You may not see this job: ask an administrator for access to its VM or host."


def require(user, action: str, obj=None, *, what: str = "") -> None:
    """Refuse (Forbidden, with what to ask for) unless ``user`` may do ``action`` to ``obj``.

    The refusal is recorded in the audit log as ``what`` (default "<kind>.<action>").
    """
    if may(user, action, obj):
        return
    message = refusal_message(user, action, obj)
    record_refusal(user=user, action=what or f"{_kind(obj)}.{action}", target=obj, message=message)
    raise Forbidden(message)


def record_refusal(*, user, action: str, target=None, message: str = "", details: dict | None = None, **extra) -> None:
    """Announce a refusal (the audit log records it at once, whatever transaction rolls back)."""
    refused.send(sender=None, user=user, action=action, target=target, message=message, details=details, **extra)


# --- querysets: lists, counts and totals hold only what the user may see ---------------------------------
def visible_vms(user, qs: QuerySet) -> QuerySet:
    v = visibility_for(user)
    if v.everything:
        return qs
    return qs.filter(Q(host_id__in=v.host_ids) | Q(uuid__in=v.vm_uuids))


def visible_hosts(user, qs: QuerySet) -> QuerySet:
    v = visibility_for(user)
    return qs if v.everything else qs.filter(pk__in=v.host_ids)


def visible_on_hosts(user, qs: QuerySet, field: str = "host_id") -> QuerySet:
    """Rows that live on a host (pools, volumes: ``field`` names their host) of the hosts the user may see."""
    v = visibility_for(user)
    return qs if v.everything else qs.filter(**{f"{field}__in": v.host_ids})


def visible_jobs(user, qs: QuerySet) -> QuerySet:
    """Jobs on hosts and VMs the user may see, including the history of a VM now on such a host."""
    v = visibility_for(user)
    if v.everything:
        return qs
    return qs.filter(
        Q(host_id__in=v.host_ids)
        | Q(target_host_id__in=v.host_ids)
        | Q(vm_uuid__in=v.vm_uuids)
        | Q(vm__host_id__in=v.host_ids)
    )


# --- sockets and consoles ---------------------------------------------------------------------------------
def may_subscribe(user, topic: str) -> bool:
    """May ``user`` follow ``topic`` on the live socket (events are filtered by Visibility too)?"""
    if not _active(user):
        return False
    visibility = visibility_for(user)
    kind, _, ident = topic.partition(":")
    if kind in ("fleet", "jobs") and not ident:
        return True
    if visibility.everything:
        return True
    if kind == "host":
        return visibility.allows_host(int(ident))
    if kind == "vm":
        try:
            uuid = uuidlib.UUID(ident)
        except ValueError:
            return False
        host_id = _model("vm").objects.filter(uuid=uuid).values_list("host_id", flat=True).first()
        return host_id is not None and visibility.allows_vm(uuid=str(uuid), host_id=host_id)
    if kind == "job":
        job = _model("job").objects.filter(pk=int(ident)).only("vm_uuid", "host_id", "target_host_id").first()
        return job is not None and visibility.allows_job(
            vm_uuid=job.vm_uuid, host_id=job.host_id, target_host_id=job.target_host_id
        )
    return False


def may_open_console(user, vm) -> bool:
    """May ``user`` open ``vm``'s console (ticket issue and the proxy both ask)?"""
    return user is not None and may(user, CONSOLE, vm)
