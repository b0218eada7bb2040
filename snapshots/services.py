"""Asking for snapshot jobs (the engine checks the right, the options and the lock)."""

from __future__ import annotations

from jobs.engine import job_request
from vms.models import VM

ACTIONS = {"create": "snapshot.create", "revert": "snapshot.revert", "delete": "snapshot.delete"}


def snapshot_request(*, vm: VM, action: str, params: dict, user=None, ip: str | None = None):
    """A snapshot job of ``action`` (create, revert, delete) on ``vm``."""
    return job_request(kind=ACTIONS[action], target=vm, params=params, user=user, ip=ip)
