"""Snapshot jobs on the libvirt test driver (it answers internal snapshots: create with memory, list,
parent, revert, delete; not DISK_ONLY, which the lab covers): the rows follow libvirt after every
job, the tree, reverts with the chosen state afterwards, delete with the subtree, refusals before
libvirt is asked, a worker's death judged by what libvirt lists, undo of a half-made snapshot, and
the live event."""

from __future__ import annotations

import pytest

from core.errors import ServiceError
from jobs import engine
from jobs.models import Job, JobStatus
from snapshots.inventory import snapshots_sync
from snapshots.models import Snapshot
from snapshots.selectors import snapshot_tree
from snapshots.services import snapshot_request
from vms.models import VM

APP = "11111111-1111-4111-8111-111111111901"  # running, qcow2 vda, read-only CD-ROM sda
RAW = "11111111-1111-4111-8111-111111111902"  # shut off, raw vdb


@pytest.fixture
def host(add_host):
    return add_host("snaphost", "host-snap.xml")


@pytest.fixture
def pushes(monkeypatch):
    sent = []
    monkeypatch.setattr(
        "core.realtime.push_now", lambda groups, event: sent.append((groups, event.model_dump(mode="json")))
    )
    return sent


@pytest.fixture
def snap(on_commit, admin_user):
    def run(uuid, action, user=None, **params):
        vm = VM.objects.get(uuid=uuid)
        with on_commit():
            job = snapshot_request(vm=vm, action=action, params=params, user=user or admin_user)
        job.refresh_from_db()
        return job

    return run


def dom(raw_libvirt, host, uuid):
    return raw_libvirt(host).lookupByUUIDString(uuid)


def names(raw_libvirt, host, uuid) -> set[str]:
    return {s.getName() for s in dom(raw_libvirt, host, uuid).listAllSnapshots(0)}


def test_a_running_vm_is_snapshotted_with_memory_and_its_cdrom_left_out(host, snap, raw_libvirt, pushes):
    job = snap(APP, "create", name="before-upgrade", description="<b>risky</b> & so on")
    assert job.status == "succeeded", job.error
    assert job.message.startswith("snapshot before-upgrade taken (with memory)")
    assert names(raw_libvirt, host, APP) == {"before-upgrade"}
    row = Snapshot.objects.get(vm__uuid=APP, name="before-upgrade")
    assert (row.state, row.memory, row.current, row.description) == (
        "running",
        "internal",
        True,
        "<b>risky</b> & so on",
    )
    assert {d["name"]: d["mode"] for d in row.disks} == {"vda": "internal", "sda": "no"}
    assert row.size == 0 and row.size_kind == "taken"  # the test driver's disks never grow; measured, not guessed
    assert [e for _, e in pushes if e["type"] == "vm.snapshots"][-1] == {
        "type": "vm.snapshots", "vm": APP, "host": host.pk, "count": 1, "current": "before-upgrade"}  # fmt: skip
    assert [e.message for e in job.events.all()][2:4] == ["checking the VM and its snapshots on the host",
                                                          "taking snapshot before-upgrade with memory"]  # fmt: skip


def test_the_tree_revert_and_delete_with_children(host, snap, raw_libvirt):
    for name in ("a", "b", "c"):
        assert snap(APP, "create", name=name).status == "succeeded"
    vm = VM.objects.get(uuid=APP)
    tree = snapshot_tree(vm=vm)
    assert [(n.row.name, n.depth, n.descendants) for n in tree] == [("a", 0, 2), ("b", 1, 1), ("c", 2, 0)]
    job = snap(APP, "revert", name="a", after="paused")
    assert job.status == "succeeded", job.error
    assert job.message == "reverted to a; the VM is paused"
    assert VM.objects.get(uuid=APP).state == "paused"
    assert Snapshot.objects.get(vm=vm, name="a").current and not Snapshot.objects.get(vm=vm, name="c").current
    job = snap(APP, "revert", name="c", after="shutoff")
    assert job.status == "succeeded" and VM.objects.get(uuid=APP).state == "shutoff"
    job = snap(APP, "delete", name="b", children=True)
    assert job.status == "succeeded", job.error
    assert job.message == "deleted b, c (no disk file removed)"
    assert names(raw_libvirt, host, APP) == {"a"} and list(
        Snapshot.objects.filter(vm=vm).values_list("name", flat=True)
    ) == ["a"]
    assert snap(APP, "delete", name="a").status == "succeeded"
    assert not Snapshot.objects.filter(vm=vm).exists() and names(raw_libvirt, host, APP) == set()
    assert dom(raw_libvirt, host, APP).XMLDesc(0).count("<disk") == 2  # the VM's disks are all still there


def test_refusals_come_before_libvirt_is_asked(host, snap, raw_libvirt):
    with pytest.raises(ServiceError, match=r"disk vdb \(/var/lib/images/raw.img\) is raw.*only qcow2"):
        snap(RAW, "create", name="x")
    assert snap(APP, "create", name="one").status == "succeeded"
    with pytest.raises(ServiceError, match="already has a snapshot named one"):
        snap(APP, "create", name="one")
    with pytest.raises(ServiceError, match="could neither revert it"):
        snap(APP, "create", name="d", disk_only=True)
    with pytest.raises(ServiceError, match="always holds its memory"):
        snap(APP, "create", name="m", memory=False)
    with pytest.raises(ServiceError, match="has no snapshot named nope"):
        snap(APP, "revert", name="nope")
    for bad in ("a/b", "<x>", "x y", "'; drop", "é", "-lead", "a" * 101):
        with pytest.raises(ServiceError, match="not a usable snapshot name") as caught:
            snap(APP, "create", name=bad)
        assert caught.value.field == "params.name"
    assert names(raw_libvirt, host, APP) == {"one"}
    assert Job.objects.filter(kind="snapshot.create", status=JobStatus.SUCCEEDED).count() == 1


def test_an_empty_name_is_a_timestamp(host, snap):
    job = snap(APP, "create", name="")
    assert job.status == "succeeded" and job.params["name"].startswith("snap-")


def test_a_snapshot_job_locks_the_vm(host, on_commit, admin_user):
    from core.errors import Conflict
    from vms.services import vm_job_request

    vm = VM.objects.get(uuid=APP)
    job = snapshot_request(vm=vm, action="create", params={"name": "s"}, user=admin_user)  # queued, not run
    with pytest.raises(Conflict, match="busy with take snapshot"):
        vm_job_request(vm=vm, action="suspend", user=admin_user)
    assert job.lock_key == f"vm:{APP}"


def _interrupted(host, kind: str, params: dict, result: dict | None = None) -> Job:
    vm = VM.objects.get(uuid=APP)
    return Job.objects.create(kind=kind, vm=vm, vm_uuid=vm.uuid, vm_name=vm.name, host=host, host_name=host.name,
                              lock_key=f"vm:{vm.uuid}", params=params, result=result or {}, status=JobStatus.RUNNING,
                              worker="worker@gone")  # fmt: skip


def test_an_interrupted_create_ends_with_what_libvirt_lists(host, raw_libvirt, on_commit):
    made = _interrupted(host, "snapshot.create", {"name": "late", "description": "", "memory": True,
                                                  "disk_only": False, "quiesce": False}, {"creating": "late"})  # fmt: skip
    dom(raw_libvirt, host, APP).snapshotCreateXML("<domainsnapshot><name>late</name></domainsnapshot>", 0)
    with on_commit():
        ended = engine.job_end_interrupted(made, reason="worker worker@gone stopped")
    assert ended.status == "succeeded" and "but libvirt lists snapshot late (running)" in ended.message
    assert Snapshot.objects.filter(vm__uuid=APP, name="late").exists()  # re-read after it
    lost = _interrupted(host, "snapshot.create", {"name": "never", "description": "", "memory": True,
                                                  "disk_only": False, "quiesce": False}, {"creating": "never"})  # fmt: skip
    with on_commit():
        ended = engine.job_end_interrupted(lost, reason="worker worker@gone stopped")
    assert ended.status == "failed" and "libvirt lists no snapshot never: it was not made" in ended.error
    from vms.services import vm_job_request

    with on_commit():  # nothing stays locked
        job = vm_job_request(vm=VM.objects.get(uuid=APP), action="suspend", user=None)
    job.refresh_from_db()
    assert job.status == "succeeded"


def test_undo_of_a_failed_create_removes_only_its_own_snapshot(host, raw_libvirt, on_commit):
    d = dom(raw_libvirt, host, APP)
    d.snapshotCreateXML("<domainsnapshot><name>keep</name></domainsnapshot>", 0)
    d.snapshotCreateXML("<domainsnapshot><name>half</name></domainsnapshot>", 0)
    job = _interrupted(host, "snapshot.create", {"name": "half"}, {"creating": "half"})
    undone = job.spec.undo(job)
    assert undone == "undone: removed the half-made snapshot half (only the snapshot; no disk file touched)"
    assert names(raw_libvirt, host, APP) == {"keep"}
    assert job.spec.undo(job) == ""  # libvirt no longer lists it: nothing to do
    Job.objects.filter(pk=job.pk).update(status=JobStatus.FAILED)
    before = _interrupted(host, "snapshot.create", {"name": "keep"}, {})  # refused before it made anything
    assert before.spec.undo(before) == "" and names(raw_libvirt, host, APP) == {"keep"}


def test_interrupted_revert_and_delete_are_judged_by_libvirt(host, raw_libvirt, on_commit, snap):
    assert snap(APP, "create", name="a").status == "succeeded"
    assert snap(APP, "create", name="b").status == "succeeded"
    job = _interrupted(host, "snapshot.revert", {"name": "a", "after": "", "force": False, "current_before": "b"})
    d = dom(raw_libvirt, host, APP)
    d.revertToSnapshot(d.snapshotLookupByName("a", 0), 0)
    with on_commit():
        assert engine.job_end_interrupted(job, reason="x").status == "succeeded"
    assert Snapshot.objects.get(vm__uuid=APP, name="a").current
    job = _interrupted(host, "snapshot.delete", {"name": "a", "children": True, "subtree": ["b"]})
    with on_commit():
        ended = engine.job_end_interrupted(job, reason="x")
    assert ended.status == "failed" and "libvirt still lists a, b" in ended.error


def test_an_unchanged_resync_writes_nothing(host, snap, pushes, django_assert_max_num_queries, raw_libvirt):
    from hosts.connections import host_connection

    assert snap(APP, "create", name="a").status == "succeeded"
    pushes.clear()
    conn = host_connection(host)
    with django_assert_max_num_queries(1):
        counts = snapshots_sync(host, conn)
    assert counts.changed == 0 and counts.objects == 1 and not pushes
    dom(raw_libvirt, host, APP).snapshotCreateXML("<domainsnapshot><name>behind</name></domainsnapshot>", 0)
    assert snapshots_sync(host, conn).updated == 1  # made behind Virtfleet's back: found by the sync
    assert Snapshot.objects.get(vm__uuid=APP, name="behind").parent == "a"


def test_a_revert_event_hints_a_reread(host, raw_libvirt):
    import time

    from hosts.connections import host_connection
    from virt import snapshots as vsnap

    conn = host_connection(host)
    seen = []
    vsnap.register_snapshot_events(conn, seen.append)
    d = conn.raw.lookupByUUIDString(APP)
    s = d.snapshotCreateXML("<domainsnapshot><name>e</name></domainsnapshot>", 0)
    d.revertToSnapshot(s, 0)
    deadline = time.monotonic() + 3
    while not seen and time.monotonic() < deadline:
        time.sleep(0.02)
    conn.deregister_events()
    assert APP in seen
