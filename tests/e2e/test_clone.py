"""Clones made on the lab's real hosts (libvirtd + QEMU) through the API, booted, and checked from
inside the guests: a marker the source wrote on its disk before it was cloned is read by the clone.
Full (an overlay source comes out flat), linked with the source frozen (both boot), to another host,
live (block copy of a running guest); and interrupted — cancelled, its worker killed, its target host
lost mid-copy — leaving no volume or domain of the clone (virsh), the source as it was and not locked.
The clone form is seen in Chromium."""

from __future__ import annotations

import os
import signal
import time

import pytest

import lab
from jobs.models import Job
from storage.models import StoragePool
from tests.e2e.conftest import Api, domstate, screenshot, virsh, wait_for
from tests.e2e.test_provisioning import BASE, BOOT, READY, _clean, _volume
from vms.models import VM

pytestmark = [pytest.mark.e2e]
BIG = 48 * 2**20  # a second disk of random data: at 4 MiB/s its copy lasts long enough to interrupt


@pytest.fixture
def env(lab_hosts, lab_state, stack, e2e_user, real_broker):
    """Both real hosts with nothing of these tests on them, and an API client."""
    _clean(lab_state)
    from hosts.connections import host_connection
    from storage.inventory import pool_reread

    for host in lab_hosts:
        pool_reread(host=host, name="lab", conn=host_connection(host))
    yield lab_hosts, lab_state.real_hosts, Api(stack.url, e2e_user)
    _clean(lab_state)


def _vols(lab_host) -> list[str]:
    return sorted(line.split()[0] for line in virsh(lab_host, "vol-list", "--pool", "lab").splitlines() if line.strip())


def _doms(lab_host) -> list[str]:
    return sorted(virsh(lab_host, "list", "--all", "--name").split())


def _source(api, host, lab1, *, name="t-src", overlay=False, big=False, marker="") -> VM:
    """A VM on lab1 booting from a copy (or an overlay) of lab-disk.qcow2, with ``marker`` written on
    its disk from inside it, then shut off; with ``big``, a second disk of random data."""
    pool = StoragePool.objects.get(host=host, name="lab")
    if overlay:
        virsh(lab1, "vol-create-as", "lab", f"{name}.qcow2", "64M", "--format", "qcow2",
              "--backing-vol", "lab-disk.qcow2", "--backing-vol-format", "qcow2")  # fmt: skip
    else:
        virsh(lab1, "vol-clone", "--pool", "lab", "lab-disk.qcow2", f"{name}.qcow2")
    job = api.job(api.post("/api/vms/create/", {**BASE, "host": host.pk, "name": name, "source": "import",
                                                "image_volume": _volume(pool, f"{name}.qcow2").pk}))  # fmt: skip
    assert job.status == "succeeded", job.error
    uuid = job.params["plan"]["uuid"]
    lab.wait_guest_serial(lab1, name, READY, timeout=BOOT)
    if marker:
        _write_marker(lab1, name, marker)
    virsh(lab1, "destroy", name)
    if big:
        data = f"/tmp/{name}-{os.getpid()}.raw"
        with open(data, "wb") as f:
            f.write(os.urandom(BIG))
        try:
            virsh(lab1, "vol-create-as", "lab", f"{name}-big.raw", str(BIG), "--format", "raw")
            virsh(lab1, "vol-upload", "--pool", "lab", f"{name}-big.raw", data)
        finally:
            os.unlink(data)
        virsh(lab1, "attach-disk", name, f"/var/lib/libvirt/images/{name}-big.raw", "vdb", "--config",
              "--driver", "qemu", "--subdriver", "raw")  # fmt: skip
        _volume(pool, f"{name}-big.raw")
        from vms.inventory import vm_reread

        vm_reread(host=host, uuid=uuid)  # its new disk, whatever the listener has seen yet
    return wait_for(lambda: (vm := VM.objects.filter(uuid=uuid, state="shutoff").first())
                    and (not big or "vdb" in str(vm.disks)) and vm,
                    timeout=20, message=f"{name} shut off (and its disks) in the inventory")  # fmt: skip


def _clone(api, vm, timeout=120, **params) -> Job:
    return api.job(api.post(f"/api/vms/{vm.uuid}/clone/", params), timeout=timeout)


def _write_marker(lab_host, name: str, marker: str) -> None:
    """The marker written from inside the guest (asked again a few times: right after the banner the
    guest's disk probing may still hold the disk), with the guest's own words when it cannot."""
    for attempt in range(3):
        try:
            return lab.guest_write_marker(lab_host, name, marker)
        except lab.LabError:
            if attempt == 2:
                _rc, said = lab.guest_run(lab_host, name, "dmesg | tail -8; cat /proc/partitions")
                raise AssertionError(f"{name} cannot write its marker; the guest says: {said}\n"
                                     + virsh(lab_host, "dumpxml", name)) from None  # fmt: skip
            time.sleep(2)


def _read_marker(lab_host, name: str) -> str | None:
    for _ in range(3):
        found = lab.guest_read_marker(lab_host, name)
        if found is not None:
            return found
        time.sleep(2)
    return None


def _boots_with(lab_host, name: str, marker: str) -> None:
    lab.wait_guest_serial(lab_host, name, READY, timeout=BOOT)
    assert _read_marker(lab_host, name) == marker


def test_a_full_clone_of_an_overlay_boots_flat_and_reads_the_sources_marker(env, page, stack):
    (host, _h2), (lab1, _l2), api = env
    src = _source(api, host, lab1, overlay=True, marker="before-full-clone")
    before = virsh(lab1, "dumpxml", "--inactive", "--security-info", "t-src")
    page.goto(f"{stack.url}/vms/{src.uuid}/")
    page.click('[data-action="clone"]')
    page.wait_for_selector("#clone-form")
    assert "t-src-clone" in page.inner_text("#clone-form")  # the default name, as virt-clone's
    screenshot(page, "clone-form")
    job = _clone(api, src, name="t-full", start=True)
    assert job.status == "succeeded", job.error
    assert job.message.startswith("cloned t-src as t-full: 1 disk(s) copied, started")
    _boots_with(lab1, "t-full", "before-full-clone")
    vol = virsh(lab1, "vol-dumpxml", "--pool", "lab", "t-full-vda.qcow2")
    assert "<backingStore>" not in vol or "lab-disk.qcow2" not in vol  # flattened: its own data
    assert virsh(lab1, "dumpxml", "--inactive", "--security-info", "t-src") == before  # untouched
    xml = virsh(lab1, "dumpxml", "t-full")
    assert src.uuid.hex not in xml.replace("-", "") and "t-full.serial.log" in xml
    page.goto(f"{stack.url}/jobs/{job.pk}/")
    screenshot(page, "clone-job")


def test_a_linked_clone_with_the_source_frozen_and_both_boot(env):
    (host, _h2), (lab1, _l2), api = env
    src = _source(api, host, lab1, marker="before-linked")
    refused = api.post(f"/api/vms/{src.uuid}/clone/", {"name": "t-lnk", "mode": "linked"})
    assert refused.status_code == 400 and "freeze_source" in refused.json()["error"]
    job = _clone(api, src, name="t-lnk", mode="linked", freeze_source=True, start=True)
    assert job.status == "succeeded", job.error
    assert "t-src frozen on its own overlay" in job.message
    assert "t-src.qcow2" in virsh(lab1, "vol-dumpxml", "--pool", "lab", "t-lnk-vda.qcow2")  # its backing file
    assert "t-src-vda-top.qcow2" in virsh(lab1, "dumpxml", "--inactive", "t-src")
    _boots_with(lab1, "t-lnk", "before-linked")
    virsh(lab1, "start", "t-src")
    _boots_with(lab1, "t-src", "before-linked")
    _write_marker(lab1, "t-src", "source-after")  # on its own overlay: the clone does not see it
    assert _read_marker(lab1, "t-lnk") == "before-linked"


def test_a_clone_to_another_host_is_streamed_and_boots_there(env):
    (host, host2), (lab1, lab2), api = env
    src = _source(api, host, lab1, marker="across")
    job = _clone(api, src, name="t-far", host=host2.pk, start=True)
    assert job.status == "succeeded", job.error
    assert "on lab2" in job.message
    assert "t-far-vda.qcow2" in _vols(lab2) and "t-far" in _doms(lab2) and "t-far" not in _doms(lab1)
    _boots_with(lab2, "t-far", "across")


def test_a_live_clone_of_a_running_guest_boots_and_the_source_keeps_running(env):
    (host, _h2), (lab1, _l2), api = env
    src = _source(api, host, lab1, marker="live-one")
    virsh(lab1, "start", "t-src")
    lab.wait_guest_serial(lab1, "t-src", READY, timeout=BOOT)
    wait_for(lambda: VM.objects.get(pk=src.pk).state == "running", 20)
    refused = api.post(f"/api/vms/{src.uuid}/clone/", {"name": "t-live"})
    assert refused.status_code == 400 and "it is running" in refused.json()["error"]
    job = _clone(api, src, name="t-live", running="live", start=True)
    assert job.status == "succeeded", job.error
    assert domstate(lab1, "t-src") == "running"
    assert "t-src.qcow2" in virsh(lab1, "dumpxml", "t-src") and "<mirror" not in virsh(lab1, "dumpxml", "t-src")
    _boots_with(lab1, "t-live", "live-one")
    assert _read_marker(lab1, "t-src") == "live-one"  # the source still reads its own disk


def test_a_paused_clone_resumes_the_source(env):
    (host, _h2), (lab1, _l2), api = env
    src = _source(api, host, lab1, marker="paused-one")
    virsh(lab1, "start", "t-src")
    lab.wait_guest_serial(lab1, "t-src", READY, timeout=BOOT)
    wait_for(lambda: VM.objects.get(pk=src.pk).state == "running", 20)
    job = _clone(api, src, name="t-pz", running="pause", start=True)
    assert job.status == "succeeded", job.error
    assert domstate(lab1, "t-src") == "running"
    _boots_with(lab1, "t-pz", "paused-one")


def _nothing_left(lab1, lab2, src_xml: str, src: VM, api, names=("t-cut",)) -> None:
    """No volume or domain of the clone on either host, the source as it was and not locked."""
    for h in (lab1, lab2):
        assert not [v for v in _vols(h) if v.startswith(names)], _vols(h)
        assert not [d for d in _doms(h) if d.startswith(names)]
    assert virsh(lab1, "dumpxml", "--inactive", "--security-info", "t-src") == src_xml
    assert domstate(lab1, "t-src") == "shut off"
    assert {"t-src.qcow2", "t-src-big.raw"} <= set(_vols(lab1))  # source disks never deleted
    again = api.post(f"/api/vms/{src.uuid}/actions/", {"action": "start"})
    assert again.status_code == 202, again.text  # not locked
    done = api.job(again, timeout=30)
    assert done.status == "succeeded", done.error
    virsh(lab1, "destroy", "t-src")


def _copying(job_id: int) -> Job:
    return wait_for(lambda: (j := Job.objects.get(pk=job_id)).status == "running" and "copying vdb" in j.message and j,
                    timeout=60, message="the clone to be copying vdb")  # fmt: skip


def test_a_clone_cancelled_mid_copy_leaves_nothing(env, page, stack):
    (host, _h2), (lab1, lab2), api = env
    src = _source(api, host, lab1, big=True)
    src_xml = virsh(lab1, "dumpxml", "--inactive", "--security-info", "t-src")
    response = api.post(f"/api/vms/{src.uuid}/clone/", {"name": "t-cut", "bandwidth": 4})
    assert response.status_code == 202, response.text
    job = _copying(response.json()["id"])
    assert "MiB/s" in job.message and job.progress > 0
    page.goto(f"{stack.url}/jobs/{job.pk}/")
    page.wait_for_selector(".progress")
    screenshot(page, "clone-job-copying")
    assert api.s.post(f"{api.base}/api/jobs/{job.pk}/cancel/", timeout=10).status_code in (200, 202)
    job = wait_for(lambda: (j := Job.objects.get(pk=job.pk)).status in ("cancelled", "failed") and j, 30)
    assert job.status == "cancelled", job.error
    assert "undone: deleted the volume(s) it had made: t-cut-vda.qcow2, t-cut-vdb.raw" in job.message
    _nothing_left(lab1, lab2, src_xml, src, api)


def test_a_clone_whose_worker_is_killed_mid_copy_is_ended_and_undone(env, stack):
    (host, _h2), (lab1, lab2), api = env
    src = _source(api, host, lab1, big=True)
    src_xml = virsh(lab1, "dumpxml", "--inactive", "--security-info", "t-src")
    response = api.post(f"/api/vms/{src.uuid}/clone/", {"name": "t-cut", "bandwidth": 4})
    assert response.status_code == 202, response.text
    job = _copying(response.json()["id"])
    stack.stop("worker", sig=signal.SIGKILL)
    assert Job.objects.get(pk=job.pk).status == "running"
    stack.start_worker("worker")  # on start it ends the jobs its previous life left running
    job = wait_for(lambda: (j := Job.objects.get(pk=job.pk)).status != "running" and j, 60, message="the job ended")
    assert job.status == "failed" and job.error_code == "interrupted"
    assert "the clone was not made" in job.error and "undone: deleted the volume(s) it had made" in job.error
    _nothing_left(lab1, lab2, src_xml, src, api)


def test_a_clone_whose_target_host_is_lost_mid_copy_fails_and_leaves_nothing(env, lab_state):
    (host, host2), (lab1, lab2), api = env
    src = _source(api, host, lab1, big=True)
    src_xml = virsh(lab1, "dumpxml", "--inactive", "--security-info", "t-src")
    response = api.post(f"/api/vms/{src.uuid}/clone/", {"name": "t-cut", "host": host2.pk, "bandwidth": 4})
    assert response.status_code == 202, response.text
    job = _copying(response.json()["id"])
    lab.kill_libvirtd(lab_state.base_dir, lab2.name)
    try:
        job = wait_for(lambda: (j := Job.objects.get(pk=job.pk)).status != "running" and j, 60, message="the job ended")
    finally:
        lab.start_libvirtd(lab_state.base_dir, lab2.name)
    assert job.status == "failed", job.message
    assert "t-cut-vdb.raw" in job.error or "t-cut-vda.qcow2" in job.error  # what it made and could not remove yet
    # the partial volume is removed once lab2 answers again (the listener's resync)
    wait_for(lambda: not [v for v in _vols(lab2) if v.startswith("t-cut")], 60, message="lab2's partial volume removed")
    time.sleep(0.5)
    _nothing_left(lab1, lab2, src_xml, src, api)
