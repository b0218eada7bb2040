"""Reads of snapshots: a VM's tree as pages and the API show it, and what each button may do
(the refusals of virt.snapshots, from the VM's XML as last read and its host's libvirt version)."""

from __future__ import annotations

from dataclasses import dataclass, field

from jobs.models import Job
from virt import snapshots as vsnap
from vms.models import VM

from .models import Snapshot

KINDS = ("snapshot.create", "snapshot.revert", "snapshot.delete")


def snapshot_infos(*, vm: VM) -> list[vsnap.SnapshotInfo]:
    """The VM's snapshots as virt describes them, from the rows (what refusals are judged on)."""
    return [info_of(row) for row in Snapshot.objects.filter(vm=vm)]


def info_of(row: Snapshot) -> vsnap.SnapshotInfo:
    return vsnap.SnapshotInfo(
        name=row.name, parent=row.parent, description=row.description, state=row.state,
        created=int(row.created.timestamp()) if row.created else 0, memory=row.memory,
        memory_file=row.memory_file, current=row.current,
        disks=tuple(vsnap.SnapshotDisk(name=d.get("name", ""), mode=d.get("mode", ""), file=d.get("file", ""))
                    for d in row.disks or ()),
    )  # fmt: skip


def refusal_for(*, vm: VM, action: str, infos: list[vsnap.SnapshotInfo] | None = None, **kwargs) -> str:
    """Why ``action`` cannot be done on ``vm`` now, from what the database knows ("" = it can)."""
    if vm.gone_at is not None:
        return "it no longer exists"
    if vm.host is None or vm.host.state != "connected":
        return "its host is not connected"
    if not vm.xml:
        return "its definition has not been read yet"
    if vm.state not in ("running", "paused", "shutoff"):
        return f"it is {vm.get_state_display().lower()}; wait until it runs or is shut off"
    return vsnap.refusal(action=action, libvirt_version=vm.host.libvirt_version, domain_xml=vm.xml,
                         state=vm.state, snapshots=snapshot_infos(vm=vm) if infos is None else infos, **kwargs)  # fmt: skip


@dataclass
class Node:
    row: Snapshot
    depth: int
    descendants: int = 0
    revert_refusal: str = ""
    delete_refusal: str = ""
    delete_tree_refusal: str = ""
    children: list[Node] = field(default_factory=list)


def snapshot_tree(*, vm: VM) -> list[Node]:
    """The VM's snapshots in tree order (parents before their children, oldest first), each with
    its depth, its number of descendants and why it cannot be reverted to or deleted."""
    rows = list(Snapshot.objects.filter(vm=vm))
    infos = [info_of(r) for r in rows]
    names = {r.name for r in rows}
    by_parent: dict[str, list[Snapshot]] = {}
    for r in rows:
        by_parent.setdefault(r.parent if r.parent in names else "", []).append(r)
    out: list[Node] = []

    def walk(parent: str, depth: int) -> int:
        total = 0
        for r in by_parent.get(parent, []):
            node = Node(row=r, depth=depth)
            out.append(node)
            node.descendants = walk(r.name, depth + 1)
            total += 1 + node.descendants
        return total

    walk("", 0)
    for node in out:
        name = node.row.name
        node.revert_refusal = refusal_for(vm=vm, action="revert", infos=infos, name=name)
        node.delete_refusal = refusal_for(vm=vm, action="delete", infos=infos, name=name)
        node.delete_tree_refusal = (refusal_for(vm=vm, action="delete", infos=infos, name=name, children=True)
                                    if node.descendants else "")  # fmt: skip
    return out


def subtree_size(*, vm: VM, name: str) -> int:
    """How many snapshots lie below ``name``."""
    infos = snapshot_infos(vm=vm)
    return len(vsnap.subtree(infos, name))


def active_snapshot_job(*, vm: VM) -> Job | None:
    return Job.objects.active().filter(vm_uuid=vm.uuid, kind__in=KINDS).order_by("-pk").first()


def tree_data(*, vm: VM) -> list[dict]:
    """The tree as the API gives it."""
    return [
        {
            "name": n.row.name, "parent": n.row.parent, "depth": n.depth, "description": n.row.description,
            "state": n.row.state, "created": n.row.created, "memory": n.row.memory, "memory_file": n.row.memory_file,
            "disk_only": n.row.disk_only, "external": n.row.external, "disks": n.row.disks, "current": n.row.current,
            "size": n.row.size, "size_kind": n.row.size_kind, "descendants": n.descendants, "read_at": n.row.read_at,
            "refused": {"revert": n.revert_refusal, "delete": n.delete_refusal,
                        "delete_children": n.delete_tree_refusal},
        }
        for n in snapshot_tree(vm=vm)
    ]  # fmt: skip
