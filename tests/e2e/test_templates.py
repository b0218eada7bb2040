"""Templates on the lab's real hosts (libvirtd + QEMU), through the API: a cloud-image VM marked as a
template, 3 VMs deployed from it spread over lab1 and lab2, each booting and reporting the host name
its own NoCloud seed gave it; the template's disk copied to lab2 once and reused by the next deploy
there; deploys interrupted mid-copy (the worker killed, or cancelled) leave nothing half-made or
locked, checked with virsh; the Templates page and the deploy form in Chromium."""

from __future__ import annotations

import shutil
import signal
import time

import pytest

import lab
from jobs.models import Job
from provisioning.models import TemplateImage
from storage.models import StoragePool, Volume
from tests.e2e.conftest import ROOT, Api, screenshot, virsh, wait_for
from tests.e2e.test_provisioning import _clean
from vms.models import VM

pytestmark = [pytest.mark.e2e]
BOOT = 150  # seconds a guest may take to boot under TCG with others booting beside it
VM_BASE = {"memory_mib": 128, "vcpus": 1, "virttype": "qemu", "nics": [{"network": "lab"}], "start": False}


@pytest.fixture
def tpl(lab_hosts, lab_state, stack, e2e_user, real_broker):
    """lab1 and lab2 with nothing of these tests on them, and an API client."""
    _clean(lab_state)
    _reread(lab_hosts)
    yield lab_hosts, lab_state.real_hosts, Api(stack.url, e2e_user)
    _clean(lab_state)


def _reread(hosts) -> None:
    from hosts.connections import host_connection
    from storage.inventory import pool_reread

    for host in hosts:
        pool_reread(host=host, name="lab", conn=host_connection(host))


def _pool(host) -> StoragePool:
    return StoragePool.objects.get(host=host, name="lab")


def _vols(lab_host, prefix: str = "t-") -> list[str]:
    return sorted(v for line in virsh(lab_host, "vol-list", "--pool", "lab").splitlines() if line.strip()
                  and (v := line.split()[0]).startswith(prefix))  # fmt: skip


def _doms(lab_host) -> list[str]:
    return sorted(n for n in virsh(lab_host, "list", "--all", "--name").split() if n.startswith("t-"))


def _template(api: Api, host, body: dict) -> VM:
    """A shut-off VM made through the API, then marked as a template through the API."""
    job = api.job(api.post("/api/vms/create/", {**VM_BASE, "host": host.pk, **body}))
    assert job.status == "succeeded", job.error
    vm = wait_for(lambda: VM.objects.filter(name=body["name"], state="shutoff").first(), timeout=20)
    mark = api.job(api.s.post(f"{api.base}/api/vms/{vm.uuid}/template/", timeout=30))
    assert mark.status == "succeeded", mark.error
    return wait_for(lambda: VM.objects.filter(pk=vm.pk, template=True).first(), timeout=20, message="the mark")


def _timeline(job: Job) -> str:
    return "\n".join(job.events.order_by("pk").values_list("message", flat=True))


def test_three_vms_from_a_template_spread_over_two_hosts_boot_with_their_own_host_names(tpl, page, stack):
    (host1, host2), (lab1, lab2), api = tpl
    cloud = Volume.objects.get(pool=_pool(host1), name="lab-cloud.qcow2")
    template = _template(api, host1, {"name": "t-tpl", "source": "cloud", "image_volume": cloud.pk,
                                      "disk_pool": _pool(host1).pk, "disk_size": "64M", "ci_user": "nobody"})  # fmt: skip
    assert "lab-cloud.qcow2" in virsh(lab1, "vol-dumpxml", "--pool", "lab", "t-tpl.qcow2")  # an overlay of it
    assert "virtfleet.dev/xmlns/template/1" in virsh(lab1, "dumpxml", "--inactive", "t-tpl")
    refused = api.post(f"/api/vms/{template.uuid}/actions/", {"action": "start"})
    assert refused.status_code == 400 and "templates never start" in refused.json()["error"], refused.text

    started = time.monotonic()
    job = api.job(api.post(f"/api/templates/{template.uuid}/deploy/", {"count": 3, "name_pattern": "t-web-{n}",
                                                                       "spread": True, "ci_user": "ops"}),
                  timeout=240)  # fmt: skip
    seconds = time.monotonic() - started
    assert job.status == "succeeded", job.error
    placement = {p["name"]: p["host"] for p in job.params["placement"]}
    assert set(placement.values()) == {host1.pk, host2.pk}
    children = list(job.children.order_by("pk"))
    assert [c.status for c in children] == ["succeeded"] * 3
    on = {host1.pk: lab1, host2.pk: lab2}
    for name, host_id in placement.items():
        said = wait_for(lambda n=name, h=host_id: lab.guest_cloud_init(on[h], n), timeout=BOOT,
                        message=f"{name}'s cloud-init line")  # fmt: skip
        assert (said["hostname"], said["user"]) == (name, "ops")
        lab.wait_guest_ready(on[host_id], name, timeout=BOOT, hostname=name)
    copies = _vols(lab2, "t-tpl-vda-")
    assert len(copies) == 1, copies  # the template's disk went to lab2 once
    assert TemplateImage.objects.filter(template=template, host=host2, complete=True).count() == 1
    assert _timeline(job).count("copying the template's disk vda") == 1
    for name, host_id in placement.items():
        overlay = virsh(on[host_id], "vol-dumpxml", "--pool", "lab", f"{name}-vda.qcow2")
        assert (copies[0] if host_id == host2.pk else "t-tpl.qcow2") in overlay  # linked to its host's base
    print(f"\nMEASURED deploy of 3 linked VMs spread over 2 hosts (one 1st copy): {seconds:.1f} s")

    started = time.monotonic()
    again = api.job(api.post(f"/api/templates/{template.uuid}/deploy/", {"count": 1, "name_pattern": "t-again",
                                                                         "host": host2.pk, "ci_user": "ops"}))  # fmt: skip
    seconds = time.monotonic() - started
    assert again.status == "succeeded", again.error
    timeline = _timeline(again)
    assert "reusing the copy of vda on lab2" in timeline and "no copy needed" in timeline
    assert "copying the template's disk" not in timeline
    assert _vols(lab2, "t-tpl-vda-") == copies
    said = wait_for(lambda: lab.guest_cloud_init(lab2, "t-again"), timeout=BOOT, message="t-again's cloud-init line")
    assert said["hostname"] == "t-again"
    print(f"MEASURED deploy of 1 linked VM to a host holding the copy: {seconds:.1f} s")

    unmark = api.s.delete(f"{api.base}/api/vms/{template.uuid}/template/", timeout=30)
    assert unmark.status_code == 400 and "overlays of its disk" in unmark.json()["error"]

    page.goto(f"{stack.url}/templates/")
    assert page.locator("#template-table tr[data-uuid]").count() == 1
    assert "lab2" in page.locator("#template-table").inner_text()
    shutil.copy(screenshot(page, "templates"), ROOT / "docs" / "screenshots" / "templates.png")
    page.goto(f"{stack.url}/templates/{template.uuid}/deploy/")
    page.fill("#f-count", "4")
    page.fill("#f-pattern", "t-app-{n:02}")
    page.wait_for_function("document.querySelector('#name-preview').textContent.includes('t-app-04')")
    page.select_option("#f-target", "spread")
    page.fill("#f-ci-user", "ops")
    shutil.copy(screenshot(page, "templates-deploy"), ROOT / "docs" / "screenshots" / "templates-deploy.png")
    page.fill("#f-pattern", "t-web-{n}")
    page.fill("#f-count", "1")
    page.click('[data-action="deploy"]')
    page.wait_for_selector('[data-error-for="name_pattern"]')
    assert "already has a VM named t-web-1" in page.inner_text('[data-error-for="name_pattern"]')


def _job_done(job_id: int) -> Job | None:
    job = Job.objects.get(pk=job_id)
    return job if job.status in ("succeeded", "failed", "cancelled") else None


def test_a_deploy_interrupted_mid_copy_leaves_nothing_half_made_or_locked(tpl, stack):
    (host1, host2), (lab1, lab2), api = tpl
    virsh(lab1, "vol-clone", "--pool", "lab", "lab-cloud.qcow2", "t-big.qcow2")  # 16 MiB, no backing file
    _reread([host1])
    image = Volume.objects.get(pool=_pool(host1), name="t-big.qcow2")
    template = _template(api, host1, {"name": "t-big", "source": "import", "image_volume": image.pk})
    before = (_doms(lab2), _vols(lab2))
    slow = {"count": 2, "name_pattern": "t-far-{n}", "host": host2.pk, "copy_bandwidth": 1, "start": False,
            "cloud_init": False}  # fmt: skip

    # 1. the worker dies mid-copy
    response = api.post(f"/api/templates/{template.uuid}/deploy/", slow)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    wait_for(lambda: _vols(lab2, "t-big-vda-") and Job.objects.get(pk=job_id).progress > 0, 40,
             message="the copy to lab2 to be under way")  # fmt: skip
    stack.stop("worker", sig=signal.SIGKILL)
    time.sleep(0.5)
    stack.start_worker()  # its reaper ends what the killed one was running
    job = wait_for(lambda: _job_done(job_id), 60, message="the interrupted deploy to end")
    assert job.status == "failed" and "interrupted" in job.error, job.error
    assert "removed the partial copy t-big-vda-" in job.error and "on lab2" in job.error
    assert (_doms(lab2), _vols(lab2)) == before
    assert not TemplateImage.objects.exists() and not Job.objects.active().exists()

    # 2. cancelled mid-copy
    response = api.post(f"/api/templates/{template.uuid}/deploy/", slow)
    job_id = response.json()["id"]
    wait_for(lambda: _vols(lab2, "t-big-vda-") and Job.objects.get(pk=job_id).progress > 0, 40,
             message="the copy to lab2 to be under way")  # fmt: skip
    cancel = api.s.post(f"{api.base}/api/jobs/{job_id}/cancel/", timeout=30)
    assert cancel.status_code in (200, 202), cancel.text
    job = wait_for(lambda: _job_done(job_id), 60, message="the cancelled deploy to end")
    assert job.status == "cancelled" and "removed the partial copy t-big-vda-" in job.message, job.message
    assert (_doms(lab2), _vols(lab2)) == before
    assert not TemplateImage.objects.exists() and not Job.objects.active().exists()

    # 3. nothing is locked: the same deploy, unthrottled, goes through; the copy is whole
    job = api.job(api.post(f"/api/templates/{template.uuid}/deploy/", {**slow, "copy_bandwidth": 0}), timeout=120)
    assert job.status == "succeeded", job.error
    assert _doms(lab2) == ["t-far-1", "t-far-2"]
    copy = _vols(lab2, "t-big-vda-")
    assert len(copy) == 1
    info = virsh(lab2, "vol-info", "--pool", "lab", copy[0], "--bytes")
    assert str(image.capacity) in info
    assert "t-big.qcow2" in _vols(lab1)  # the template's disk is untouched
