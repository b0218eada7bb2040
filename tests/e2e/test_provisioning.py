"""VMs created and changed on the lab's real hosts (libvirtd + QEMU), through the API and the New VM
form in Chromium, and seen from inside the guests: booted from the lab's ISO, from an imported disk,
from a cloud image whose init prints the host name and user its NoCloud seed gave it; from XML,
persistent and transient; a disk and a NIC plugged into a running guest and seen by it; and bad
input refused or rolled back with nothing left behind, checked with virsh."""

from __future__ import annotations

import re

import pytest

import lab
from jobs.models import Job
from storage.models import StoragePool, Volume
from tests.e2e.conftest import Api, screenshot, virsh, wait_for
from vms.models import VM

pytestmark = [pytest.mark.e2e]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO6QXmUWnShNGsmUIFqcxQ6vOGn7kCIBGVzOHv7Q2v3m alice@laptop"
READY = r"virtfleet lab guest .+ ready"
BOOT = 60  # seconds a guest may take to boot under TCG on a busy machine


def _clean(lab_state) -> None:
    for lab_host in lab_state.real_hosts:
        for name in virsh(lab_host, "list", "--all", "--name").split():
            if name.startswith("t-"):
                virsh(lab_host, "destroy", name, check=False)
                virsh(lab_host, "undefine", name, "--nvram", check=False)
        for line in virsh(lab_host, "vol-list", "--pool", "lab").splitlines():
            volume = line.split()[0] if line.strip() else ""
            if volume.startswith("t-"):
                virsh(lab_host, "vol-delete", "--pool", "lab", volume, check=False)
        virsh(lab_host, "pool-refresh", "lab")


@pytest.fixture
def prov(lab_hosts, lab_state, stack, e2e_user, real_broker):
    """lab1 with nothing of these tests on it, its lab pool as Virtfleet sees it, and an API client."""
    _clean(lab_state)
    from hosts.connections import host_connection
    from storage.inventory import pool_reread

    host = lab_hosts[0]
    pool_reread(host=host, name="lab", conn=host_connection(host))
    yield (
        host,
        lab_state.real_hosts[0],
        StoragePool.objects.get(host=host, name="lab"),
        Api(stack.url, e2e_user, "e2e provisioning"),
    )
    _clean(lab_state)


def _volume(pool, name: str) -> Volume:
    from hosts.connections import host_connection
    from storage.inventory import pool_reread

    pool_reread(host=pool.host, name=pool.name, conn=host_connection(pool.host))
    return Volume.objects.get(pool=pool, name=name)


def _vols(lab_host) -> list[str]:
    return sorted(line.split()[0] for line in virsh(lab_host, "vol-list", "--pool", "lab").splitlines() if line.strip())


def _doms(lab_host) -> list[str]:
    return sorted(virsh(lab_host, "list", "--all", "--name").split())


BASE = {"memory_mib": 128, "vcpus": 1, "virttype": "qemu", "nics": [{"network": "lab"}]}


def test_vms_from_the_iso_and_from_an_imported_disk_boot(prov):
    host, lab1, pool, api = prov
    iso = _volume(pool, "lab-boot.iso")
    job = api.job(api.post("/api/vms/create/", {**BASE, "host": host.pk, "name": "t-iso", "source": "iso",
                                                "iso_volume": iso.pk, "disk_pool": pool.pk, "disk_size": "64M"}))  # fmt: skip
    assert job.status == "succeeded", job.error
    assert "volume t-iso.qcow2" in job.message
    lab.wait_guest_serial(lab1, "t-iso", READY, timeout=BOOT)  # booted from the CD (the new disk is empty)
    xml = virsh(lab1, "dumpxml", "t-iso")
    assert "machine='pc-q35" in xml and "<boot order='1'/>" in xml and "lab-boot.iso" in xml
    assert "passwd=" not in xml  # the VNC password is never shown, not even by dumpxml without --security-info
    assert "passwd=" in virsh(lab1, "dumpxml", "--security-info", "t-iso")

    virsh(lab1, "vol-clone", "--pool", "lab", "lab-disk.qcow2", "t-import.qcow2")
    image = _volume(pool, "t-import.qcow2")
    job = api.job(api.post("/api/vms/create/", {**BASE, "host": host.pk, "name": "t-import", "source": "import",
                                                "image_volume": image.pk, "os": "linux2022"}))  # fmt: skip
    assert job.status == "succeeded", job.error
    lab.wait_guest_serial(lab1, "t-import", r"disk vda appeared", timeout=BOOT)  # it booted from its own disk
    lab.wait_guest_serial(lab1, "t-import", READY, timeout=BOOT)
    vm = wait_for(lambda: VM.objects.filter(name="t-import", state="running").first(), timeout=10)
    assert [d["volume"] for d in vm.disks if d["device"] == "disk"] == ["t-import.qcow2"]
    assert Job.objects.get(pk=job.pk).vm_id == vm.pk


def test_a_cloud_image_vm_made_in_the_form_gets_its_host_name_and_user_from_the_seed(page, stack, prov):
    host, lab1, pool, _api = prov
    cloud = _volume(pool, "lab-cloud.qcow2")
    page.goto(f"{stack.url}/vms/new/?host={host.pk}")
    page.fill("#f-name", "t-cloud")
    page.fill("#f-os", "linux2022")
    page.check("input[name=source][value=cloud]")
    assert page.is_hidden("#f-iso") and page.is_visible("#f-ci-user")  # only what the source needs
    page.select_option("#f-image", str(cloud.pk))
    page.select_option("#f-pool", str(pool.pk))
    page.fill("#f-size", "64M")
    page.fill("#f-mem", "128")
    page.fill("#f-vcpus", "1")
    page.select_option("#f-vt", "qemu")
    page.select_option("#f-nic0", "network:lab")
    page.fill("#f-ci-host", "cloudy1")
    page.fill("#f-ci-user", "alice")
    page.fill("#f-ci-pw", "Correct-Horse-9")
    page.fill("#f-ci-keys", KEY)
    screenshot(page, "new-vm-cloud")
    page.click('[data-action="create-vm"]')
    page.wait_for_url(re.compile(r"/jobs/\d+/"))
    job = Job.objects.filter(kind="vm.create").latest("pk")
    wait_for(lambda: Job.objects.get(pk=job.pk).status in ("succeeded", "failed"), timeout=90)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    said = wait_for(lambda: lab.guest_cloud_init(lab1, "t-cloud"), timeout=BOOT, message="the cloud-init line")
    assert (said["hostname"], said["user"], said["password"], said["ssh_keys"]) == ("cloudy1", "alice", "yes", "1")
    assert said["instance_id"] == f"iid-{job.params['plan']['uuid']}"
    lab.wait_guest_ready(lab1, "t-cloud", timeout=BOOT, hostname="cloudy1")
    assert sorted(v for v in _vols(lab1) if v.startswith("t-")) == ["t-cloud-seed.iso", "t-cloud.qcow2"]
    overlay = virsh(lab1, "vol-dumpxml", "--pool", "lab", "t-cloud.qcow2")
    assert "lab-cloud.qcow2" in overlay  # backed by the cloud image, which stays as it was
    page.goto(f"{stack.url}/jobs/{job.pk}/")
    screenshot(page, "new-vm-cloud-job")
    assert "Correct-Horse-9" not in str(job.params)


def test_vms_from_xml_persistent_and_transient(prov):
    host, lab1, _pool, api = prov
    virsh(lab1, "vol-clone", "--pool", "lab", "lab-disk.qcow2", "t-xml.qcow2")
    xml = ("<domain type='qemu'><name>{name}</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>"
           "<os><type arch='x86_64' machine='pc'>hvm</type></os><features><acpi/></features><devices>"
           "<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/><source pool='lab' volume='t-xml.qcow2'/>"
           "<target dev='vda' bus='virtio'/></disk><serial type='pty'><log file='/var/log/libvirt/qemu/{name}.serial.log'"
           " append='off'/><target port='0'/></serial><console type='pty'/></devices></domain>")  # fmt: skip
    job = api.job(api.post("/api/vms/define/", {"host": host.pk, "xml": xml.format(name="t-xml"), "start": True}))
    assert job.status == "succeeded", job.error
    lab.wait_guest_serial(lab1, "t-xml", READY, timeout=BOOT)
    assert "t-xml" in virsh(lab1, "list", "--persistent", "--name")
    virsh(lab1, "destroy", "t-xml")
    job = api.job(api.post("/api/vms/define/", {"host": host.pk, "xml": xml.format(name="t-transient"),
                                                "transient": True}))  # fmt: skip
    assert job.status == "succeeded", job.error
    assert "transient" in job.message
    lab.wait_guest_serial(lab1, "t-transient", READY, timeout=BOOT)
    assert "t-transient" in virsh(lab1, "list", "--transient", "--name")
    vm = wait_for(lambda: VM.objects.filter(name="t-transient", state="running").first(), timeout=10)
    assert vm.persistent is False
    virsh(lab1, "destroy", "t-transient")
    assert "t-transient" not in _doms(lab1)  # gone once it stops


def test_a_disk_and_a_nic_hot_plugged_into_a_running_guest_are_seen_by_it(prov, lab_state, page, stack):
    host, lab1, pool, api = prov
    virsh(lab1, "vol-clone", "--pool", "lab", "lab-disk.qcow2", "t-hot.qcow2")
    job = api.job(api.post("/api/vms/create/", {**BASE, "host": host.pk, "name": "t-hot", "source": "import",
                                                "image_volume": _volume(pool, "t-hot.qcow2").pk}))  # fmt: skip
    assert job.status == "succeeded", job.error
    lab.wait_guest_serial(lab1, "t-hot", READY, timeout=BOOT)
    vm = wait_for(lambda: VM.objects.filter(name="t-hot", state="running").first(), timeout=10)
    # the guest loads its disk drivers after the banner: a disk plugged before they enumerate its boot
    # disk is named vda by the guest (a race seen under load), so wait for the boot disk first
    lab.wait_guest_serial(lab1, "t-hot", r"disk vda appeared", timeout=30)

    disk = api.job(api.post(f"/api/vms/{vm.uuid}/hardware/disk_attach/", {"pool": pool.pk, "size": "16M"}))
    assert disk.status == "succeeded", disk.error
    assert "disk vdb (t-hot-disk1.qcow2): now and in its definition" in disk.message
    lab.wait_guest_serial(lab1, "t-hot", r"disk vdb appeared \(16 MiB", timeout=30)

    nic = api.job(api.post(f"/api/vms/{vm.uuid}/hardware/nic_attach/", {"network": "lab"}))
    assert nic.status == "succeeded", nic.error
    mac = re.search(r"NIC (\S+) on lab", nic.message).group(1)
    lab.wait_guest_serial(lab1, "t-hot", r": eth1 has 10\.250\.", timeout=40)  # the guest's DHCP on the new NIC
    assert mac in virsh(lab1, "domiflist", "t-hot")

    gone = api.job(api.post(f"/api/vms/{vm.uuid}/hardware/disk_detach/", {"target": "vdb", "delete_volume": True}))
    assert gone.status == "succeeded", gone.error
    assert (
        "disk vdb detached: now and in its definition" in gone.message
        and "volume t-hot-disk1.qcow2 deleted" in gone.message
    )
    lab.wait_guest_serial(lab1, "t-hot", r"disk vdb removed", timeout=30)
    assert "t-hot-disk1.qcow2" not in _vols(lab1)

    sata = api.post(f"/api/vms/{vm.uuid}/hardware/disk_attach/", {"pool": pool.pk, "size": "16M", "bus": "sata"})
    assert sata.status_code == 400 and "SATA disk cannot be plugged into a running VM" in sata.json()["error"]
    vcpus = api.job(api.post(f"/api/vms/{vm.uuid}/hardware/vcpus/", {"vcpus": 2}))
    assert "takes effect at the next boot" in vcpus.message
    assert wait_for(lambda: VM.objects.get(pk=vm.pk).pending, timeout=10) == ["2 vCPUs (runs with 1)"]
    page.goto(f"{stack.url}/vms/{vm.uuid}/")
    assert "2 vCPUs (runs with 1)" in page.inner_text("#vm-pending")
    page.click('[data-nav="hardware"]')
    page.wait_for_selector("#nic-table")
    assert mac in page.inner_text("#nic-table") and "vda" in page.inner_text("#disk-table")
    screenshot(page, "vm-hardware")


def test_bad_input_is_refused_or_rolled_back_with_nothing_left(prov, tmp_path):
    host, lab1, pool, api = prov
    domains, volumes = _doms(lab1), _vols(lab1)
    # refused before anything is made
    for body, message in [
        ({"name": "lab1-vm1", "source": "iso", "iso_volume": _volume(pool, "lab-boot.iso").pk, "disk_pool": pool.pk},
         "lab1 already has a VM named lab1-vm1"),
        ({"name": "t-big", "source": "none", "disk_pool": pool.pk, "disk_size": "100T", "disk_format": "raw"},
         "needs 100 TiB and pool lab has"),
        ({"name": "t-sb", "source": "none", "disk_pool": pool.pk, "disk_size": "64M", "machine": "pc", "firmware": "efi",
          "secure_boot": True}, "no secure boot firmware for pc machines"),
    ]:  # fmt: skip
        refused = api.post("/api/vms/create/", {**BASE, "host": host.pk, **body})
        assert refused.status_code == 400 and message in refused.json()["error"], refused.text
    # libvirt refuses: an XML naming a missing emulator, said in plain words
    job = api.job(api.post("/api/vms/define/", {"host": host.pk, "xml": "<domain type='qemu'><name>t-emu</name>"
                                                "<memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os>"
                                                "<devices><emulator>/usr/bin/no-such-qemu</emulator></devices></domain>"}))  # fmt: skip
    assert job.status == "failed" and "the emulator it names does not exist on the host" in job.error
    # a "cloud image" that is not a disk image: found out before anything is made
    text = tmp_path / "notes.txt"
    text.write_text("these are notes, not a disk image\n" * 2000)
    virsh(lab1, "vol-create-as", "lab", "t-notdisk.img", str(text.stat().st_size), "--format", "raw")
    virsh(lab1, "vol-upload", "--pool", "lab", "t-notdisk.img", str(text))
    job = api.job(api.post("/api/vms/create/", {**BASE, "host": host.pk, "name": "t-notdisk", "source": "cloud",
                                                "image_volume": _volume(pool, "t-notdisk.img").pk, "disk_pool": pool.pk,
                                                "disk_size": "64M", "ci_user": "bob"}))  # fmt: skip
    assert job.status == "failed" and "t-notdisk.img cannot be the VM's disk: it has no disk image header" in job.error
    # a creation that fails after it made volumes and the domain: all of it undone
    job = api.job(api.post("/api/vms/create/", {**BASE, "host": host.pk, "name": "t-fail", "source": "none",
                                                "disk_pool": pool.pk, "disk_size": "64M", "start": True,
                                                "nics": [{"bridge": "no-such-br0"}]}))  # fmt: skip
    assert job.status == "failed" and "did not start" in job.error
    assert "undone: stopped the VM and undefined it" in job.error or "undone: undefined it" in job.error
    assert "deleted the volume(s) it had made: t-fail.qcow2" in job.error
    assert _doms(lab1) == domains
    assert _vols(lab1) == sorted([*volumes, "t-notdisk.img"])
