"""Who may see what — the one place pages, API, sockets and console tickets ask.

Until roles and object permissions land (access-control issue), every signed-in user sees the
whole fleet; the shape (Visibility) is what the consumers already filter events with.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Visibility:
    """What one user may see: the whole fleet, or chosen hosts and VMs."""

    everything: bool = False
    host_ids: frozenset[int] = field(default_factory=frozenset)
    vm_uuids: frozenset[str] = field(default_factory=frozenset)

    def allows_vm(self, *, uuid: str, host_id: int | None) -> bool:
        return self.everything or str(uuid) in self.vm_uuids or host_id in self.host_ids

    def allows_host(self, host_id: int) -> bool:
        return self.everything or host_id in self.host_ids

    def allows(self, event: dict) -> bool:
        """May this user receive ``event`` (a dashboard.realtime event)?"""
        if self.everything:
            return True
        kind = event.get("type")
        if kind == "vm.updated":
            vm = event["vm"]
            return self.allows_vm(uuid=vm["uuid"], host_id=vm.get("host"))
        if kind == "host.updated":
            return self.allows_host(event["host"]["id"])
        if kind == "host.removed":
            return self.allows_host(event["host_id"])
        if kind == "job.updated":
            job = event["job"]
            return self.allows_vm(uuid=job.get("vm_uuid") or "", host_id=job.get("host"))
        if kind == "migration.progress":
            return str(event.get("vm_uuid")) in self.vm_uuids
        return False


def visibility_for(user) -> Visibility:
    if user is None or not user.is_authenticated:
        return Visibility()
    return Visibility(everything=True)


def may_subscribe(user, topic: str) -> bool:
    return bool(user and user.is_authenticated)


def may_open_console(user, vm) -> bool:
    """May ``user`` open ``vm``'s console (ticket issue and the proxy both ask)? Today: may see it."""
    return visibility_for(user).allows_vm(uuid=str(vm.uuid), host_id=vm.host_id)
