"""The storage pages in Chromium against the lab's real hosts: a pool defined through its form (and
the form's refusals), pools and volumes that follow libvirt live, the fleet-wide list with its
filters, and a VM's disks linked to their volumes."""

from __future__ import annotations

import pytest

from hosts.services import host_sync
from storage.models import StoragePool, Volume
from tests.e2e.conftest import screenshot, virsh, wait_for
from vms.models import VM

pytestmark = [pytest.mark.e2e]

DISK_VM = "t-disk-vm"
DISK_VM_UUID = "5e1f0000-0000-4000-8000-00000000d15c"


@pytest.fixture
def clean_lab(lab_hosts, lab_state):
    """No pool or VM of these tests on the lab hosts, before and after."""

    def clean():
        for lab_host in lab_state.real_hosts:
            if "t-pool" in virsh(lab_host, "pool-list", "--all", "--name"):
                virsh(lab_host, "pool-destroy", "t-pool", check=False)
                virsh(lab_host, "pool-delete", "t-pool", check=False)
                virsh(lab_host, "pool-undefine", "t-pool", check=False)
            if DISK_VM in virsh(lab_host, "list", "--all", "--name"):
                virsh(lab_host, "undefine", DISK_VM)

    clean()
    yield lab_hosts
    clean()


def test_a_pool_defined_through_its_form_appears_live_and_bad_input_is_explained(page, stack, clean_lab, lab_state):
    lab2 = clean_lab[1]
    page.goto(f"{stack.url}/hosts/{lab2.pk}/")
    page.wait_for_selector("#live-indicator.live-up")
    assert page.locator("#host-pools").get_by_text("lab", exact=True).is_visible()
    page.click('[data-action="new-pool"]')
    # the form asks only what the chosen type needs
    page.select_option("#id_type", "netfs")
    assert page.is_visible("#id_source_host") and page.is_visible("#id_source_dir")
    assert not page.is_visible("#id_source_name")
    page.select_option("#id_type", "logical")
    assert page.is_visible("#id_source_name") and not page.is_visible("#id_target_path")
    page.select_option("#id_type", "dir")
    assert page.is_visible("#id_target_path") and not page.is_visible("#id_source_host")
    # refused before libvirt is called, with what to fix, where the user looks
    page.fill("#id_name", "t-pool")
    page.fill("#id_target_path", "relative/dir")
    page.click('[data-action="define-pool"]')
    error = page.locator('[data-pool-field="target_path"] .error-text')
    assert "absolute path" in error.inner_text()
    page.fill("#id_name", "lab")
    page.fill("#id_target_path", "/var/lib/libvirt/t-pool")
    page.click('[data-action="define-pool"]')
    assert "already has a pool named lab" in page.inner_text("#pool-form")
    screenshot(page, "storage-pool-form-error")
    page.fill("#id_name", "t-pool")
    page.click('[data-action="define-pool"]')
    page.wait_for_url(f"{stack.url}/hosts/{lab2.pk}/")
    row = page.locator("#host-pools tr", has_text="t-pool")
    row.locator(".badge", has_text="Active").wait_for(timeout=30000)  # the job's end reached the page
    pool = StoragePool.objects.get(host=lab2, name="t-pool")
    assert pool.state == "active" and pool.autostart and pool.target_path == "/var/lib/libvirt/t-pool"
    assert "t-pool" in virsh(lab_state.real_hosts[1], "pool-list", "--name")
    screenshot(page, "storage-host-pools")
    # libvirt changes behind Virtfleet's back: the page follows its pool events
    virsh(lab_state.real_hosts[1], "pool-destroy", "t-pool")
    wait_for(lambda: StoragePool.objects.get(pk=pool.pk).state == "inactive", 15, message="the listener to see it")
    row.locator(".badge", has_text="Inactive").wait_for(timeout=15000)


def test_the_fleet_storage_page_lists_and_filters_every_hosts_pools(page, stack, clean_lab):
    page.goto(f"{stack.url}/storage/")
    table = page.locator("#pool-table")
    table.locator("tr", has_text="lab1").first.wait_for()
    assert table.locator("tbody tr").count() == 2  # the lab pool of each host
    screenshot(page, "storage")
    page.select_option("select[name=host]", label="lab2")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**host=*")
    assert table.locator("tbody tr").count() == 1 and "lab2" in table.inner_text()
    page.goto(f"{stack.url}/storage/?q=nosuchpool")
    assert "No pool matches these filters" in page.inner_text("#pool-table")


def test_a_vms_disks_link_to_their_volumes_and_the_volume_names_its_vm(page, stack, clean_lab, lab_state):
    lab1_host, lab1 = clean_lab[0], lab_state.real_hosts[0]
    xml = f"""<domain type='qemu'><name>{DISK_VM}</name><uuid>{DISK_VM_UUID}</uuid><memory unit='MiB'>96</memory>
      <os><type arch='x86_64'>hvm</type></os><devices>
      <disk type='volume' device='disk'><driver name='qemu' type='qcow2'/><source pool='lab' volume='lab-disk.qcow2'/>
        <target dev='vda' bus='virtio'/></disk>
      <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>
        <source file='/var/lib/libvirt/images/lab-boot.iso'/><target dev='sda' bus='sata'/><readonly/></disk>
      </devices></domain>"""
    path = stack.logs / "t-disk-vm.xml"
    path.write_text(xml)
    virsh(lab1, "define", str(path))
    host_sync(host=lab1_host)
    wait_for(lambda: VM.objects.filter(uuid=DISK_VM_UUID).exists(), 20, message="the VM row")
    page.goto(f"{stack.url}/vms/{DISK_VM_UUID}/")
    disks = page.locator("#vm-disks")
    disks.locator("tr", has_text="vda").wait_for()
    vda = disks.locator("tr", has_text="vda").inner_text()
    assert "lab-disk.qcow2" in vda and "lab" in vda and "qcow2" in vda and "virtio" in vda and "32 MiB" in vda
    sda = disks.locator("tr", has_text="sda").inner_text()
    assert "lab-boot.iso" in sda and "cdrom" in sda and "read-only" in sda
    screenshot(page, "storage-vm-disks")
    disks.get_by_role("link", name="lab-disk.qcow2").click()
    page.wait_for_url("**/storage/pools/*/")
    used = page.locator("tr", has_text="lab-disk.qcow2")
    assert used.get_by_role("link", name=DISK_VM).is_visible()
    # the lab's own guests boot with the pool's ISO as their CD-ROM
    iso = page.locator("tr", has_text="lab-boot.iso")
    for guest in lab1.guests:
        assert iso.get_by_role("link", name=guest.name).is_visible()
    volume = Volume.objects.get(pool__host=lab1_host, name="lab-disk.qcow2")
    # deleting it is refused, naming the VM (an administrator could tick "even though VMs use it")
    used.locator('[data-action="volume-menu"]').click()
    page.once("dialog", lambda d: d.accept())
    used.locator('[data-action="delete-volume"]').click()
    page.wait_for_selector(".messages .alert-error", timeout=10000)
    assert DISK_VM in page.inner_text("body") and "Remove it from them first" in page.inner_text("body")
    assert Volume.objects.filter(pk=volume.pk).exists() and "lab-disk.qcow2" in virsh(lab1, "vol-list", "lab")
