"""The live event of snapshots: a VM's snapshot list changed (the VM page fetches its Snapshots
section again)."""

from __future__ import annotations

from typing import Literal

from core.realtime import Audience, Event, audience, host_group, push_on_commit, vm_group


class SnapshotsChanged(Event):
    """The snapshots of a VM as libvirt lists them changed (taken, reverted to, deleted, found by a
    sync): pages showing them fetch them again. ``count`` and ``current`` say what they are now."""

    type: Literal["vm.snapshots"] = "vm.snapshots"
    vm: str
    host: int
    count: int
    current: str

    def audience(self) -> Audience:
        return audience(vm=self.vm, hosts=[self.host])


def snapshots_changed(vm, *, count: int, current: str) -> None:
    """Tell the pages of ``vm`` (and its host's) once the transaction commits."""
    push_on_commit([vm_group(vm.uuid), host_group(vm.host_id)],
                   SnapshotsChanged(vm=str(vm.uuid), host=vm.host_id, count=count, current=current))  # fmt: skip
