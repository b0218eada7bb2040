"""Live migration and host maintenance between two real lab hosts, checked with virsh on both."""

import json
import time

import pytest

from jobs.models import Job
from tests.e2e.conftest import domstate, screenshot, virsh, wait_for
from vms.models import VM

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def names(lab_host, *flags) -> list[str]:
    return virsh(lab_host, "list", "--name", *flags).split()


def send_back(guest: str, frm, to) -> None:
    """Put a guest back where the lab left it (other tests expect it there)."""
    if guest in names(frm):
        virsh(frm, "migrate", "--live", "--p2p", "--persistent", "--undefinesource", guest, to.uri, "tcp://127.0.0.1")


def job_done(job_id):
    job = Job.objects.get(pk=job_id)
    return job if job.status in ("succeeded", "failed", "cancelled") else None


def watch_progress(page):
    page.evaluate(
        """window.__progress = []; window.__noReload = true;
           document.addEventListener('vf:event', (e) => {
             if (e.detail.type === 'migration.progress') window.__progress.push([Date.now(), e.detail.progress]);
           });"""
    )


def test_live_migration_from_the_vm_page_with_progress(page, stack, lab_state, lab_hosts):
    lab1, lab2 = lab_state.real_hosts
    guest = f"{lab1.name}-vm1"
    vm = VM.objects.get(name=guest)
    try:
        page.goto(f"{stack.url}/vms/{vm.uuid}/migrate/")
        page.check(f'input[name=target][value="{lab_hosts[1].pk}"]')
        page.fill("#bandwidth_mibs", "40")  # a few seconds: long enough to watch
        page.wait_for_selector("#checks li.ok >> text=no duplicate")
        assert page.locator("#checks li.bad").count() == 0
        assert page.locator("#migrate-submit").is_enabled()
        screenshot(page, "migrate-dialog")
        page.click("#migrate-submit")
        page.wait_for_url(f"{stack.url}/vms/{vm.uuid}/")
        page.wait_for_selector("#live-indicator.live-up")
        watch_progress(page)
        job = Job.objects.filter(kind="migrate").latest("id")
        page.wait_for_selector("#migration-stats", timeout=10000)
        wait_for(lambda: page.evaluate("window.__progress.length") >= 2, 20, message="progress in the browser")
        screenshot(page, "migration-in-progress")
        job = wait_for(lambda: job_done(job.pk), 90, message="the migration to end")
        assert job.status == "succeeded", job.error
        assert guest not in names(lab1, "--all")  # gone from the source, definition included
        assert domstate(lab2, guest) == "running"
        assert "Persistent:     yes" in virsh(lab2, "dominfo", guest)
        page.wait_for_function(
            f"document.querySelector('a[data-field=host_name]').innerText === '{lab2.name}'", timeout=10000
        )
        assert page.evaluate("window.__noReload") is True
        readings = page.evaluate("window.__progress")
        seconds = (readings[-1][0] - readings[0][0]) / 1000
        rate = (len(readings) - 1) / seconds if seconds else 0
        assert rate >= 2, f"{len(readings)} progress updates in {seconds:.1f} s"
        last = readings[-1][1]
        assert last["data_total"] > 0 and last["memory_bps"] > 0 and last["elapsed_ms"] > 0
        row = VM.objects.get(uuid=vm.uuid)
        assert (
            row.host_id == lab_hosts[1].pk and row.state == "running" and VM.objects.filter(uuid=vm.uuid).count() == 1
        )
        print(
            f"migrated in {job.result['seconds']} s with {len(readings)} progress updates ({rate:.1f}/s) in the browser"
        )
    finally:
        send_back(guest, lab2, lab1)


def test_cancel_mid_way_leaves_the_vm_running_on_the_source(page, stack, lab_state, lab_hosts):
    lab1, lab2 = lab_state.real_hosts
    guest = f"{lab1.name}-vm1"
    vm = VM.objects.get(name=guest)
    try:
        page.goto(f"{stack.url}/vms/{vm.uuid}/migrate/")
        page.check(f'input[name=target][value="{lab_hosts[1].pk}"]')
        page.fill("#bandwidth_mibs", "2")  # a minute at least: plenty of time to cancel
        page.wait_for_selector("#checks li.ok >> text=no duplicate")
        page.click("#migrate-submit")
        page.wait_for_url(f"{stack.url}/vms/{vm.uuid}/")
        watch_progress(page)
        wait_for(lambda: page.evaluate("window.__progress.length") >= 1, 20, message="the migration to be under way")
        page.click(".job-active button:has-text('Cancel')")
        job = wait_for(lambda: job_done(Job.objects.filter(kind="migrate").latest("id").pk), 30, message="the cancel")
        assert job.status == "cancelled" and f"keeps running on {lab1.name}" in job.message
        assert domstate(lab1, guest) == "running" and guest not in names(lab2, "--all")
        assert VM.objects.get(uuid=vm.uuid).host_id == lab_hosts[0].pk
    finally:
        send_back(guest, lab2, lab1)


def test_a_failed_preflight_check_blocks_the_job_with_its_reason(admin_client_e2e, lab_state, lab_hosts, tmp_path):
    lab1, lab2 = lab_state.real_hosts
    guest = f"{lab1.name}-vm1"
    vm = VM.objects.get(name=guest)
    # A stale definition of the same name on the target (a classic leftover).
    xml = virsh(lab1, "dumpxml", "--migratable", guest).replace(f"<uuid>{vm.uuid}</uuid>", "")
    path = tmp_path / "dup.xml"
    path.write_text(xml)
    virsh(lab2, "define", str(path))
    try:
        response = admin_client_e2e.post(
            f"/api/vms/{vm.uuid}/migrate/", json.dumps({"target": lab_hosts[1].pk}), content_type="application/json"
        )
        body = response.json()
        assert response.status_code == 400 and body["code"] == "preflight"
        failed = {c["name"]: c["message"] for c in body["checks"] if not c["ok"]}
        assert list(failed) == ["no duplicate"] and f"already has a domain {guest}" in failed["no duplicate"]
        assert not Job.objects.filter(kind="migrate").exists()
        assert domstate(lab1, guest) == "running"
    finally:
        virsh(lab2, "undefine", guest)


def test_maintenance_empties_a_host_and_refuses_new_vms(page, stack, lab_state, lab_hosts):
    lab1, lab2 = lab_state.real_hosts
    host = lab_hosts[0]
    running = names(lab1)
    assert running, "the lab should have a running guest on lab1"
    try:
        page.goto(f"{stack.url}/hosts/{host.pk}/")
        page.once("dialog", lambda d: d.accept())
        page.click('button[data-action="enter-maintenance"]')
        page.wait_for_selector("#maintenance-panel", timeout=10000)
        screenshot(page, "maintenance-in-progress")
        job = wait_for(
            lambda: job_done(Job.objects.filter(kind="maintenance").latest("id").pk), 120, message="the evacuation"
        )
        assert job.status == "succeeded", job.error
        assert names(lab1) == []  # no running VM left on the host
        for guest in running:
            assert domstate(lab2, guest) == "running"
        assert [m["vm"] for m in job.result["moved"]] == running
        page.wait_for_selector('#host-head [data-field=status] .badge:has-text("maintenance")', timeout=10000)
        screenshot(page, "maintenance-done")
        stopped = VM.objects.get(name=f"{lab1.name}-vm2")
        page.goto(f"{stack.url}/vms/{stopped.uuid}/")
        start = page.locator('button[data-action="start"]')
        assert start.is_disabled() and "in maintenance" in start.get_attribute("title")
        page.goto(f"{stack.url}/hosts/{host.pk}/")
        page.click('button[data-action="leave-maintenance"]')
        page.wait_for_selector('#host-head [data-field=status] .badge:has-text("connected")')
    finally:
        for guest in running:
            send_back(guest, lab2, lab1)
        time.sleep(0.5)


@pytest.fixture
def admin_client_e2e(client, e2e_user):
    client.force_login(e2e_user)
    return client
