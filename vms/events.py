"""The live events of VMs: their schema, and the one place that builds and sends them."""

from __future__ import annotations

from typing import Literal

from core.realtime import FLEET_GROUP, Audience, Event, Payload, audience, host_group, push_on_commit, vm_group

from .models import VM


class VMPayload(Payload):
    """A VM as the fleet table, the API list (vms.serializers.VMSerializer) and this event show it."""

    uuid: str
    name: str
    host: int
    host_name: str
    state: str
    state_label: str
    state_reason: str
    vcpus: int
    max_vcpus: int
    memory_kib: int
    max_memory_kib: int
    persistent: bool
    autostart: bool
    managed_save: bool
    template: bool
    arch: str
    graphics_type: str
    gone: bool
    gone_at: str | None
    first_seen: str
    last_seen: str
    state_changed: str
    version: int


class VMUpdated(Event):
    type: Literal["vm.updated"] = "vm.updated"
    vm: VMPayload

    def audience(self) -> Audience:
        return audience(vm=self.vm.uuid, hosts=[self.vm.host])


def vm_payload(vm: VM) -> VMPayload:
    from .serializers import vm_data

    return VMPayload(**vm_data(vm))


def vm_changed(vm: VM, *, extra_groups: list[str] | tuple[str, ...] = ()) -> None:
    """Send ``vm.updated`` for ``vm`` (already saved with its new version) once the transaction
    commits: to the fleet, its host, itself, and ``extra_groups`` (the host it left)."""
    push_on_commit(
        [FLEET_GROUP, host_group(vm.host_id), vm_group(vm.uuid), *extra_groups], VMUpdated(vm=vm_payload(vm))
    )
