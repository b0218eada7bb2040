"""Asking for new VMs and changes of VMs: the target each job is about (a new VM is an unsaved VM
row — its UUID chosen now, its name locked on its host), and the host chosen when the user lets
Virtfleet choose. The job kinds (provisioning.kinds) check and do the rest."""

from __future__ import annotations

import uuid as uuidlib

from core import access
from core.errors import ServiceError
from hosts.models import Host
from jobs.engine import job_request
from virt import OperationInvalid
from virt.builder import xml_identity
from vms.models import VM

from .params import check_vm_name
from .planner import best_host

CHANGE_KINDS = {
    "vcpus": "vm.set_vcpus", "memory": "vm.set_memory", "disk_attach": "vm.disk_attach",
    "disk_detach": "vm.disk_detach", "nic_attach": "vm.nic_attach", "nic_detach": "vm.nic_detach",
    "media": "vm.media", "boot_order": "vm.boot_order", "rename": "vm.rename", "describe": "vm.describe",
    "xml": "vm.edit_xml",
}  # fmt: skip


def configurable_hosts(user):
    """The hosts ``user`` may create VMs on."""
    hosts = access.visible_hosts(user, Host.objects.all()) if user is not None else Host.objects.all()
    ids = [h.pk for h in hosts if access.may(user, access.CONFIGURE, h)]
    return Host.objects.filter(pk__in=ids).order_by("name")


def host_choose(*, user, memory_mib: int) -> tuple[Host, str]:
    """The best host for a new VM among those ``user`` may create VMs on, and why it was chosen."""
    host, why = best_host(memory_mib=memory_mib, hosts=configurable_hosts(user))
    if host is None:
        raise ServiceError(f"No host to create the VM on: {why}.", field="host")
    return host, why


def _name(params: dict) -> str:
    from rest_framework import serializers

    if not isinstance(params, dict):
        raise ServiceError("params must be an object.", field="params")
    try:
        return check_vm_name(str(params.get("name") or ""))
    except serializers.ValidationError as exc:
        raise ServiceError(str(exc.detail[0]), field="params.name") from None


def vm_create_request(*, host: Host | None, params: dict, user=None, ip: str | None = None):
    """Ask for a new VM on ``host`` (None: the best host); returns (job, why that host)."""
    name = _name(params)
    why = ""
    if host is None:
        memory = params.get("memory_mib")
        host, why = host_choose(user=user, memory_mib=int(memory) if str(memory or "").isdigit() else 1024)
    target = VM(uuid=uuidlib.uuid4(), host=host, name=name)
    return job_request(kind="vm.create", target=target, params=params, user=user, ip=ip), why


def vm_define_request(*, host: Host, params: dict, user=None, ip: str | None = None):
    """Ask for a VM defined (or created transient) from a domain XML."""
    if not isinstance(params, dict):
        raise ServiceError("params must be an object.", field="params")
    try:
        ident = xml_identity(str(params.get("xml") or ""))
    except OperationInvalid as exc:
        raise ServiceError(f"Cannot define the VM: {exc.message}.", field="params.xml") from None
    if ident.type and ident.type not in ("kvm", "qemu", "test", "lxc", "xen", "hvf", "vz"):
        raise ServiceError(
            f"Cannot define the VM: the XML's domain type {ident.type!r} is unknown.", field="params.xml"
        )
    try:
        check_vm_name(ident.name)
    except Exception:
        raise ServiceError(f"Cannot define the VM: its name {ident.name[:64]!r} is not a name Virtfleet accepts "
                           "(letters, digits, dots, dashes, underscores).", field="params.xml") from None  # fmt: skip
    target = VM(uuid=uuidlib.UUID(ident.uuid) if ident.uuid else uuidlib.uuid4(), host=host, name=ident.name)
    return job_request(kind="vm.define_xml", target=target, params=params, user=user, ip=ip)


def vm_change_request(*, vm: VM, change: str, params: dict, user=None, ip: str | None = None):
    """Ask for a change of ``vm``'s definition or hardware (``change`` is a key of CHANGE_KINDS)."""
    kind = CHANGE_KINDS.get(change)
    if kind is None:
        raise ServiceError(f"Unknown change {str(change)[:40]!r}; one of {', '.join(CHANGE_KINDS)}.", field="change")
    return job_request(kind=kind, target=vm, params=params, user=user, ip=ip)


def vm_clone_request(*, vm: VM, params: dict, user=None, ip: str | None = None):
    """Ask for a clone of ``vm`` (provisioning.clones): on its host, or on the host ``params["host"]``,
    which ``user`` must be allowed to create VMs on."""
    if not isinstance(params, dict):
        raise ServiceError("params must be an object.", field="params")
    host = vm.host
    chosen = params.get("host")
    if chosen not in (None, ""):
        host = Host.objects.filter(pk=chosen).first() if str(chosen).isdigit() else None
        if host is None:
            raise ServiceError("There is no such target host.", field="params.host")
        if user is not None:
            access.require(user, access.VIEW, host)
            access.require(user, access.CONFIGURE, host, what="vm.clone")
    other = host if host.pk != vm.host_id else None  # the job's target host: only another one
    return job_request(kind="vm.clone", target=vm, params=params, user=user, ip=ip, target_host=other)
