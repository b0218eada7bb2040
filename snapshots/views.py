"""The Snapshots section of a VM's page and its forms (take, revert, delete): each form asks for a
job and goes back to the VM's page, where the job's progress and the refreshed tree show."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.urls import reverse
from django.views.decorators.http import require_POST

from core import access
from core.net import client_ip
from core.shortcuts import get_or_404, run_job_request
from virt.snapshots import Request, agent_connected, quiesce_note
from vms.selectors import vm_get

from .params import default_name
from .selectors import active_snapshot_job, refusal_for, snapshot_tree
from .services import snapshot_request


def vm_snapshots_section(request, vm) -> dict:
    """What the Snapshots section shows: the tree, and why each operation is refused (if it is)."""
    live = vm.state in ("running", "paused")
    agent = bool(vm.xml) and agent_connected(vm.xml)
    name = default_name()
    return {
        "snapshot_tree": snapshot_tree(vm=vm),
        "may_snapshot": access.may(request.user, access.CONFIGURE, vm),
        "snapshot_job": active_snapshot_job(vm=vm),
        "snapshot_live": live,
        "snapshot_agent": agent,
        "snapshot_quiesce_note": quiesce_note(vm.xml) if vm.xml else "",
        "snapshot_default_name": name,
        "refuse_internal": refusal_for(vm=vm, action="create", request=Request(name=name, memory=True)),
        "refuse_disk_only": refusal_for(vm=vm, action="create", request=Request(name=name, disk_only=True)),
    }


def _back(vm) -> str:
    return reverse("vms:detail", args=[vm.uuid]) + "#vm-snapshots"


def _vm(request, uuid):
    return get_or_404(request, lambda: vm_get(uuid=uuid))


def _ask(request, uuid, action: str, params: dict, what: str):
    """Ask for a snapshot job from one of the section's forms, then back to the VM's page."""
    vm = _vm(request, uuid)
    return run_job_request(request, _back(vm), lambda: snapshot_request(vm=vm, action=action, params=params,
                                                                        user=request.user, ip=client_ip(request)),
                           what)  # fmt: skip


@login_required
@require_POST
def snapshot_create(request, uuid):
    params = {k: request.POST.get(k, "") for k in ("name", "description", "memory", "disk_only", "quiesce")}
    return _ask(request, uuid, "create", params, "The snapshot")


@login_required
@require_POST
def snapshot_revert(request, uuid, snapshot):
    params = {"name": snapshot, "after": request.POST.get("after", ""), "force": request.POST.get("force", "")}
    return _ask(request, uuid, "revert", params, "The revert")


@login_required
@require_POST
def snapshot_delete(request, uuid, snapshot):
    return _ask(request, uuid, "delete", {"name": snapshot, "children": request.POST.get("children", "")}, "The delete")
