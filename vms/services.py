"""VM services: operations on VMs become jobs of the engine (the kinds of vms.kinds)."""

from __future__ import annotations

from core.errors import ServiceError
from jobs.engine import BulkResult, job_request, jobs_request_many
from jobs.models import Job

from .actions import ACTIONS
from .models import VM


def _known(action: str) -> None:
    if action not in ACTIONS:
        raise ServiceError(f"Unknown action {str(action)[:40]!r}; use one of: {', '.join(ACTIONS)}.", field="action")


def vm_job_request(*, vm: VM, action: str, params: dict | None = None, user=None, ip: str | None = None) -> Job:
    """Ask for ``action`` (a key of vms.actions.ACTIONS) on ``vm``: a job, refused with the reason
    when the user may not, the options are wrong, the VM is busy or its state does not allow it."""
    _known(action)
    return job_request(kind=action, target=vm, params=params, user=user, ip=ip)


def vms_job_request_bulk(*, vms: list[VM], action: str, params: dict | None = None, user=None, ip=None) -> BulkResult:
    """One job per VM under one parent job; VMs that cannot take it are listed with the reason."""
    _known(action)
    return jobs_request_many(
        kind=action,
        targets=vms,
        params=params,
        user=user,
        ip=ip,
        describe=lambda vm: {"vm": str(vm.uuid), "name": vm.name},
    )
