"""Live updates end to end: libvirt events on a real host reach a real browser without reload."""

import os
import signal
import time

import pytest

import lab
from hosts.models import Host
from tests.e2e.conftest import domstate, screenshot, virsh, wait_for
from vms.models import VM

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def row_state(page, name: str) -> str:
    return (
        page.locator("#vm-rows tr", has_text=name).locator('[data-field="state"] .badge').inner_text().strip().lower()
    )


def host_status(page, name: str) -> str:
    return (
        page.locator("#host-rows tr", has_text=name)
        .locator('[data-field="status"] .badge')
        .first.inner_text()
        .strip()
        .lower()
    )


def watched(stack, lab_hosts):
    """Wait until the stack's listener holds and has resynced every lab host."""
    wait_for(lambda: all(Host.objects.get(pk=h.pk).last_sync and "watching host" in stack.log("listener") for h in lab_hosts), 20,
             message="the listener to watch the lab hosts")  # fmt: skip
    wait_for(
        lambda: stack.log("listener").count("connected and resynced") >= len(lab_hosts), 20, message="listener resync"
    )


def test_a_vm_suspended_with_virsh_changes_state_in_the_browser_without_reload(page, stack, lab_state, lab_hosts):
    watched(stack, lab_hosts)
    lab1 = lab_state.real_hosts[0]
    guest = f"{lab1.name}-vm1"
    page.goto(stack.url + "/")
    page.wait_for_selector("#live-indicator.live-up")
    page.evaluate("window.__noReload = true")
    assert row_state(page, guest) == "running"
    virsh(lab1, "suspend", guest)
    try:
        page.wait_for_function(
            f"""document.querySelector('#vm-rows tr[data-uuid="{VM.objects.get(name=guest).uuid}"] [data-field=state]')
                .innerText.trim().toLowerCase() === 'paused'""",
            timeout=5000,
        )
        assert page.evaluate("window.__noReload") is True
        # the pushed row was redrawn by live.js: a paused VM's console still opens from the table
        uuid = VM.objects.get(name=guest).uuid
        link = page.locator(f'#vm-rows tr[data-uuid="{uuid}"] [data-field=graphics] a')
        assert link.get_attribute("href") == f"/vms/{uuid}/console/"
        screenshot(page, "fleet-live-paused")
    finally:
        virsh(lab1, "resume", guest)
    wait_for(lambda: row_state(page, guest) == "running", 5, message="the row to show running again")


def test_libvirtd_killed_shows_unreachable_and_a_restart_resyncs_what_happened_meanwhile(
    page, stack, lab_state, lab_hosts
):
    watched(stack, lab_hosts)
    lab2 = lab_state.real_hosts[1]
    guest = f"{lab2.name}-vm1"
    page.goto(stack.url + "/")
    page.wait_for_selector("#live-indicator.live-up")
    page.evaluate("window.__noReload = true")
    assert host_status(page, lab2.name) == "connected"
    killed_at = time.monotonic()
    lab.kill_libvirtd(lab_state.base_dir, lab2.name)
    try:
        wait_for(lambda: host_status(page, lab2.name) == "unreachable", 12, message="the host to show unreachable")
        noticed = time.monotonic() - killed_at
        screenshot(page, "fleet-host-unreachable")
        # While the daemon is down the guest dies; nobody tells us — the resync must find out.
        qemu = lab.qemu_pids(lab2)[guest]
        os.kill(qemu, signal.SIGKILL)
    finally:
        lab.start_libvirtd(lab_state.base_dir, lab2.name)
    restarted_at = time.monotonic()
    wait_for(lambda: host_status(page, lab2.name) == "connected", 15, message="the host to be connected again")
    wait_for(lambda: row_state(page, guest) == "shut off", 10, message="the resync to show the guest off")
    resynced = time.monotonic() - restarted_at
    assert page.evaluate("window.__noReload") is True
    assert domstate(lab2, guest) == "shut off"
    print(f"unreachable shown {noticed:.2f} s after libvirtd died; resynced {resynced:.2f} s after restart")


def test_a_browser_that_lost_its_socket_refetches_and_shows_no_stale_rows(page, stack, lab_state, lab_hosts):
    watched(stack, lab_hosts)
    lab1 = lab_state.real_hosts[0]
    guest = f"{lab1.name}-vm1"
    page.goto(stack.url + "/")
    page.wait_for_selector("#live-indicator.live-up")
    stack.stop("web")  # every socket drops; events pushed now reach nobody
    try:
        page.wait_for_selector("#live-indicator.live-down", timeout=10000)
        virsh(lab1, "suspend", guest)
        wait_for(lambda: VM.objects.get(name=guest).state == "paused", 5, message="the listener to record the change")
        assert row_state(page, guest) == "running"  # the page missed it ...
        screenshot(page, "fleet-live-down")
    finally:
        stack.start_web()
    page.wait_for_selector("#live-indicator.live-up", timeout=20000)  # ... reconnects with backoff ...
    try:
        wait_for(lambda: row_state(page, guest) == "paused", 5, message="the page to refetch after reconnecting")
    finally:
        virsh(lab1, "resume", guest)
