"""Snapshots on the lab's real hosts (libvirtd 9.0 + QEMU 7.2) through the API, seen from inside the
guest and checked with virsh: a guest booted from an overlay of lab-disk.qcow2 writes a marker, is
snapshotted with its memory, writes another, is reverted and reads the first again; disk-only and
external snapshots are refused with libvirt 9.0's limits and nothing is deleted; a subtree goes in
one job; a worker killed in the middle of a memory snapshot and a host lost under a job leave the
job ended with libvirt's truth and nothing locked."""

from __future__ import annotations

import shutil
import signal
import time

import pytest

import lab
from jobs.models import Job
from snapshots.models import Snapshot
from tests.e2e.conftest import ROOT, SCREENSHOTS, Api, screenshot, virsh, wait_for
from vms.models import VM

pytestmark = [pytest.mark.e2e]
NAME = "t-snap"
BOOT = 60
ENDED = ("succeeded", "failed", "cancelled")


def _clean(lab_host) -> None:
    for name in virsh(lab_host, "list", "--all", "--name").split():
        if name.startswith("t-"):
            virsh(lab_host, "destroy", name, check=False)
            virsh(lab_host, "undefine", name, "--snapshots-metadata", "--nvram", check=False)
    for line in virsh(lab_host, "vol-list", "--pool", "lab").splitlines():
        volume = line.split()[0] if line.strip() else ""
        if volume.startswith("t-"):
            virsh(lab_host, "vol-delete", "--pool", "lab", volume, check=False)
    virsh(lab_host, "pool-refresh", "lab")


def _vols(lab_host) -> list[str]:
    return sorted(line.split()[0] for line in virsh(lab_host, "vol-list", "--pool", "lab").splitlines() if line.strip())


def _snaps(lab_host) -> list[str]:
    return sorted(virsh(lab_host, "snapshot-list", NAME, "--name").split())


@pytest.fixture
def snapvm(lab_hosts, lab_state, stack, e2e_user, real_broker):
    """t-snap on lab1: booted from a qcow2 overlay of lab-disk.qcow2, made through the API."""
    from hosts.connections import host_connection
    from storage.inventory import pool_reread
    from storage.models import Volume

    host, lab1 = lab_hosts[0], lab_state.real_hosts[0]
    _clean(lab1)
    size = virsh(lab1, "vol-info", "--pool", "lab", "--bytes", "lab-disk.qcow2")
    capacity = next(line.split()[1] for line in size.splitlines() if line.startswith("Capacity"))
    virsh(lab1, "vol-create-as", "lab", f"{NAME}.qcow2", capacity, "--format", "qcow2",
          "--backing-vol", "lab-disk.qcow2", "--backing-vol-format", "qcow2")  # fmt: skip
    pool_reread(host=host, name="lab", conn=host_connection(host))
    overlay = Volume.objects.get(pool__host=host, pool__name="lab", name=f"{NAME}.qcow2")
    api = Api(stack.url, e2e_user, "e2e snapshots")
    job = api.job(api.post("/api/vms/create/", {"host": host.pk, "name": NAME, "source": "import",
                                                "image_volume": overlay.pk, "os": "linux2022", "memory_mib": 128,
                                                "vcpus": 1, "virttype": "qemu", "nics": [{"network": "lab"}]}), timeout=90)  # fmt: skip
    assert job.status == "succeeded", job.error
    lab.wait_guest_serial(lab1, NAME, r"virtfleet lab guest .+ ready", timeout=BOOT)
    vm = wait_for(lambda: VM.objects.filter(name=NAME, state="running").first(), timeout=20)
    yield host, lab1, vm, api
    _clean(lab1)


def _wait_fat(lab1) -> None:
    """Until the guest's vfat module is in (its disk drivers load after the banner, vfat last)."""
    wait_for(lambda: lab.guest_run(lab1, NAME, "[ -d /sys/module/vfat ]")[0] == 0, 30, interval=0.5,
             message="the guest's vfat module")  # fmt: skip


def _url(vm, tail: str = "") -> str:
    return f"/api/vms/{vm.uuid}/snapshots/{tail}"


def test_a_memory_snapshot_reverts_the_guests_disk_and_external_ones_are_refused(snapvm, page, stack):
    host, lab1, vm, api = snapvm
    _wait_fat(lab1)
    lab.guest_write_marker(lab1, NAME, "before")
    started = time.monotonic()
    job = api.job(api.post(_url(vm), {"name": "before", "description": "marker says before"}))
    took = time.monotonic() - started
    assert job.status == "succeeded", job.error
    assert job.message.startswith("snapshot before taken (with memory)") and "when taken" in job.message
    assert _snaps(lab1) == ["before"]
    row = Snapshot.objects.get(vm=vm, name="before")
    assert row.memory == "internal" and row.state == "running" and row.current and row.size and row.size > 0
    print(
        f"memory snapshot of a 128 MiB TCG guest: {took:.1f} s through the API, {row.size / 2**20:.1f} MiB when taken"
    )

    lab.guest_write_marker(lab1, NAME, "after")
    assert lab.guest_read_marker(lab1, NAME) == "after"
    job = api.job(api.post(_url(vm, "before/revert/"), {"after": "running"}))
    assert job.status == "succeeded", job.error
    assert virsh(lab1, "domstate", NAME).startswith("running")
    assert lab.guest_read_marker(lab1, NAME) == "before"  # the disk is as it was when the snapshot was taken

    # disk-only: refused before anything is made, with libvirt 9.0's limits said
    refused = api.post(_url(vm), {"name": "disk1", "disk_only": True})
    assert refused.status_code == 400
    assert "could neither revert it (needs ≥ 9.9.0) nor delete it (needs ≥ 9.7.0)" in refused.json()["error"]
    assert _snaps(lab1) == ["before"]

    # an external snapshot made behind Virtfleet's back: listed, but its revert and delete are refused
    vols_before = _vols(lab1)
    virsh(lab1, "snapshot-create-as", NAME, "ext1", "made by virsh", "--disk-only", "--atomic",
          "--diskspec", f"vda,snapshot=external,file=/var/lib/libvirt/images/{NAME}.ext1")  # fmt: skip
    from hosts.services import host_sync

    assert host_sync(host=host).ok
    ext = Snapshot.objects.get(vm=vm, name="ext1")
    assert ext.external and ext.parent == "before" and ext.state == "disk-snapshot"
    refused = api.post(_url(vm, "ext1/revert/"), {})
    assert refused.status_code == 400
    assert "ext1 is an external snapshot and reverting one needs libvirt ≥ 9.9.0; this host runs 9.0.0" in refused.text
    refused = api.delete(_url(vm, "ext1/"))
    assert refused.status_code == 400 and "deleting one needs libvirt ≥ 9.7.0" in refused.json()["error"]
    refused = api.post(_url(vm), {"name": "i2"})  # vda's data is in ext1's overlay now: no mixing
    assert refused.status_code == 400 and "already has external snapshots" in refused.json()["error"]
    assert _snaps(lab1) == ["before", "ext1"]
    now = _vols(lab1)
    assert set(vols_before) <= set(now) and "lab-disk.qcow2" in now  # nothing deleted (the overlay was added)

    page.goto(f"{stack.url}/vms/{vm.uuid}/")
    page.wait_for_selector('#vm-snapshots [data-snapshot="ext1"]')
    page.wait_for_selector("#live-indicator.live-up")
    page.wait_for_timeout(800)  # the refetch after subscribing has re-rendered the section
    assert page.is_disabled('[data-snapshot="ext1"] [data-action="delete"]')
    assert "reverting one needs libvirt" in page.inner_text('[data-snapshot="ext1"] [data-refusal="revert"]')
    page.locator("#vm-snapshots").scroll_into_view_if_needed()
    page.click('[data-action="take-snapshot"]')
    page.wait_for_selector("#snap-form", state="visible")
    assert page.is_disabled('#snap-form input[value="disk_only"]')  # refused on 9.0, said beside it
    assert "could neither revert it" in page.inner_text('#snap-form [data-refusal="disk_only"]')
    screenshot(page, "snapshots-page")
    box, form = page.locator("#vm-snapshots").bounding_box(), page.locator("#snap-form").bounding_box()
    scroll = page.evaluate("window.scrollY")  # bounding boxes are in the viewport, a full-page clip in the page
    bottom = max(box["y"] + box["height"], form["y"] + form["height"]) + 8
    shot = SCREENSHOTS / "snapshots.png"
    page.screenshot(
        path=str(shot),
        full_page=True,
        clip={
            "x": box["x"] - 8,
            "y": box["y"] + scroll - 8,
            "width": box["width"] + 16,
            "height": bottom - box["y"] + 8,
        },
    )
    docs = ROOT / "docs" / "screenshots"
    if docs.exists():
        shutil.copy(shot, docs / "snapshots.png")


def test_a_subtree_is_deleted_in_one_job_and_no_disk_goes(snapvm):
    _host, lab1, vm, api = snapvm
    for name in ("a", "b", "c"):
        job = api.job(api.post(_url(vm), {"name": name}))
        assert job.status == "succeeded", job.error
    tree = [(s["name"], s["depth"]) for s in api.get(_url(vm)).json()["snapshots"]]
    assert tree == [("a", 0), ("b", 1), ("c", 2)]
    vols = _vols(lab1)
    job = api.job(api.delete(_url(vm, "b/?children=1")))
    assert job.status == "succeeded", job.error
    assert job.message == "deleted b, c (no disk file removed)"
    assert _snaps(lab1) == ["a"] and _vols(lab1) == vols
    assert list(Snapshot.objects.filter(vm=vm).values_list("name", flat=True)) == ["a"]


def test_a_worker_killed_during_a_memory_snapshot_ends_with_libvirts_truth(snapvm, stack):
    _host, lab1, vm, api = snapvm
    response = api.post(_url(vm), {"name": "killed"})
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    wait_for(lambda: Job.objects.get(pk=job_id).message.startswith(("taking snapshot", "saving memory")), 30,
             message="the snapshot to start", interval=0.02)  # fmt: skip
    time.sleep(0.3)  # libvirt is saving the guest's memory now (it takes 0.6-1.6 s here)
    stack.stop("worker", sig=signal.SIGKILL)
    killed_while = Job.objects.get(pk=job_id)
    assert killed_while.status == "running"  # the dead worker cannot end it
    stack.start_worker("worker")  # on start, the worker ends what its previous life left running
    job = wait_for(lambda: (j := Job.objects.get(pk=job_id)).status in ENDED and j, 150, message="the job to end")
    listed = "killed" in _snaps(lab1)
    print(f"killed during: {killed_while.message!r}; libvirt lists it: {listed}; job: {job.status} {job.message}")
    if listed:
        assert job.status == "succeeded" and "but libvirt lists snapshot killed" in job.message
    else:
        assert job.status == "failed" and "libvirt lists no snapshot killed" in job.error
    assert set(Snapshot.objects.filter(vm=vm).values_list("name", flat=True)) == set(_snaps(lab1))
    assert not virsh(lab1, "domjobinfo", NAME).count("Unbounded")  # libvirt has no job left either
    job = api.job(api.post(_url(vm), {"name": "next"}))  # nothing locked: a new job on the VM runs
    assert job.status == "succeeded", job.error
    assert "next" in _snaps(lab1)


def test_a_snapshot_job_on_a_lost_host_fails_clearly_and_locks_nothing(snapvm, stack, lab_state):
    host, lab1, vm, api = snapvm
    stack.stop("worker")  # the job waits in the queue while the host goes away
    response = api.post(_url(vm), {"name": "lost"})
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    lab.kill_libvirtd(lab_state.base_dir, lab1.name)
    try:
        stack.start_worker("worker")
        job = wait_for(lambda: (j := Job.objects.get(pk=job_id)).status in ENDED and j, 60, message="the job to end")
        assert job.status == "failed"
        assert "cannot reach 127.0.0.1" in job.error or "libvirt" in job.error, job.error
        print(f"lost host: {job.error}")
    finally:
        lab.start_libvirtd(lab_state.base_dir, lab1.name)
    wait_for(lambda: (h := type(host).objects.get(pk=host.pk)).state == "connected" and h, 60,
             message="the host to be back")  # fmt: skip
    assert _snaps(lab1) == []  # nothing was made
    job = api.job(api.post(_url(vm), {"name": "back"}))
    assert job.status == "succeeded", job.error
    assert _snaps(lab1) == ["back"]
