"""Changing VMs against the libvirt test driver: vCPUs and memory live or for the next boot (then
shown as pending), boot order, rename, description, the XML editor (secrets kept, UUID and name
guarded), refusals before libvirt is asked, rights, pages and API. Hot-plugging disks and NICs (which
the test driver cannot do) is tested on the lab's real hosts (tests/e2e/test_provisioning.py)."""

from __future__ import annotations

import pytest

from core.errors import Forbidden, ServiceError
from provisioning import services
from virt import hardware as hw
from vms.models import VM

WEB = "11111111-1111-4111-8111-111111111301"  # running, 1 of at most 4 vCPUs, 512 MiB, vda, NIC on default
IDLE = "11111111-1111-4111-8111-111111111302"  # shut off


@pytest.fixture
def host(add_host):
    return add_host("prov", "host-provision.xml")


@pytest.fixture
def change(on_commit, admin_user):
    def run(uuid, what, user=None, **params):
        vm = VM.objects.get(uuid=uuid)
        with on_commit():
            job = services.vm_change_request(vm=vm, change=what, params=params, user=user or admin_user)
        job.refresh_from_db()
        return job

    return run


def dom(raw_libvirt, host, uuid):
    return raw_libvirt(host).lookupByUUIDString(uuid)


def test_vcpus_change_live_up_to_the_maximum_and_beyond_it_for_the_next_boot(host, change, raw_libvirt):
    job = change(WEB, "vcpus", vcpus=3)
    assert job.status == "succeeded", job.error
    assert "now and in its definition" in job.message
    assert VM.objects.get(uuid=WEB).vcpus == 3 and VM.objects.get(uuid=WEB).pending == []
    job = change(WEB, "vcpus", vcpus=6)
    assert job.status == "succeeded", job.error
    assert "takes effect at the next boot" in job.message and "at most 4 vCPUs" in job.message
    vm = VM.objects.get(uuid=WEB)
    assert vm.vcpus == 3 and vm.pending == ["6 vCPUs (runs with 3)"]
    page_pending = vm.pending
    dom(raw_libvirt, host, WEB).destroy()  # it stops: its definition is what it boots with
    from vms.inventory import vm_reread

    vm_reread(host=host, uuid=WEB)
    vm = VM.objects.get(uuid=WEB)
    assert page_pending and vm.pending == [] and vm.vcpus == 6


def test_memory_shrinks_live_and_grows_for_the_next_boot(host, change):
    job = change(WEB, "memory", memory_mib=256)
    assert job.status == "succeeded", job.error
    assert VM.objects.get(uuid=WEB).memory_mib == 256
    job = change(WEB, "memory", memory_mib=1024)
    assert "needs a reboot (no memory hot-plug)" in job.message
    assert VM.objects.get(uuid=WEB).pending == ["1024 MiB of memory (runs with 512 MiB)"]


def test_a_shut_off_vm_is_renamed_described_and_given_a_boot_order(host, change, raw_libvirt):
    job = change(IDLE, "rename", name="idle-2")
    assert job.status == "succeeded", job.error
    assert VM.objects.get(uuid=IDLE).name == "idle-2"
    job = change(IDLE, "describe", title="Spare", description="kept for tests")
    assert job.status == "succeeded", job.error
    xml = dom(raw_libvirt, host, IDLE).XMLDesc(0)
    assert "<title>Spare</title>" in xml and "<description>kept for tests</description>" in xml
    job = change(WEB, "boot_order", order=["52:54:00:aa:03:01", "vda"])
    assert job.status == "succeeded", job.error
    conf = dom(raw_libvirt, host, WEB).XMLDesc(2)  # VIR_DOMAIN_XML_INACTIVE
    assert hw.boot_order(conf) == ["52:54:00:aa:03:01", "vda"] and "<boot dev=" not in conf


@pytest.mark.parametrize(
    ("uuid", "what", "params", "message"),
    [
        (WEB, "rename", {"name": "web2"}, "a running VM cannot be renamed"),
        (IDLE, "rename", {"name": "web"}, "prov already has a VM named web"),
        (IDLE, "rename", {"name": "bad name"}, "A VM name is 1 to 63"),
        (WEB, "vcpus", {"vcpus": 0}, "between 1 and 4096"),
        (WEB, "memory", {"memory_mib": "lots"}, "must be a whole number"),
        (WEB, "disk_detach", {"target": "vdz"}, "web has no disk vdz"),
        (WEB, "disk_attach", {}, "Choose an existing volume, or a pool and a size"),
        (WEB, "disk_attach", {"pool": 999999, "size": "1G"}, "choose a running pool of the VM's host"),
        (WEB, "nic_detach", {"mac": "52:54:00:00:00:99"}, "web has no NIC with MAC 52:54:00:00:00:99"),
        (WEB, "nic_attach", {"network": "nowhere"}, "prov has no network named nowhere"),
        (WEB, "nic_attach", {"network": "default", "mac": "52:54:00:aa:03:01"}, "already has a NIC with MAC"),
        (WEB, "media", {"target": "vda"}, "web has no CD-ROM vda"),
        (WEB, "boot_order", {"order": ["vda", "vda"]}, "vda is named twice"),
        (WEB, "teleport", {}, "Unknown change 'teleport'"),
        (WEB, "vcpus", {"vcpus": 2, "extra": 1}, "Unknown option(s) for vm.set_vcpus: extra"),
    ],
)
def test_bad_changes_are_refused_before_libvirt(host, admin_user, uuid, what, params, message):
    with pytest.raises(ServiceError) as refused:
        services.vm_change_request(vm=VM.objects.get(uuid=uuid), change=what, params=params, user=admin_user)
    assert message in refused.value.message


def test_a_disk_on_a_volume_another_vm_uses_is_refused(host, admin_user):
    from storage.models import Volume

    taken = Volume.objects.get(name="web.qcow2")
    with pytest.raises(ServiceError, match=r"web\.qcow2 is the disk of web; two VMs on one disk corrupt it"):
        services.vm_change_request(vm=VM.objects.get(uuid=IDLE), change="disk_attach", params={"volume": taken.pk},
                                   user=admin_user)  # fmt: skip


def test_changing_needs_the_configure_right(host, make_user):
    viewer = make_user("v", "viewer")
    with pytest.raises(Forbidden):
        services.vm_change_request(vm=VM.objects.get(uuid=WEB), change="vcpus", params={"vcpus": 2}, user=viewer)


# --- the XML editor ---------------------------------------------------------------------------------------
SECURE = """<domain type='kvm'><name>x</name><uuid>11111111-1111-4111-8111-111111111399</uuid>
<devices><graphics type='vnc' port='5901' autoport='yes' listen='10.0.0.5' passwd='Sekr3t'>
<listen type='address' address='10.0.0.5'/></graphics></devices></domain>"""


def test_the_editor_hides_secrets_and_saving_keeps_them():
    from virt.domains import redact_graphics_endpoint, strip_secrets

    shown = redact_graphics_endpoint(strip_secrets(SECURE))
    assert "Sekr3t" not in shown and "10.0.0.5" not in shown and "5901" not in shown
    edited = shown.replace("<devices>", "<devices><memballoon model='none'/>")
    restored = hw.restore_secrets(edited, SECURE)
    assert 'passwd="Sekr3t"' in restored and 'listen="10.0.0.5"' in restored and 'port="5901"' in restored
    assert 'address="10.0.0.5"' in restored and "memballoon" in restored
    # a password the user sets on purpose wins
    assert 'passwd="mine"' in hw.restore_secrets(
        edited.replace("<graphics type='vnc'", "<graphics type='vnc' passwd='mine'"), SECURE
    )


def test_an_edited_definition_is_saved_after_its_diff(host, admin_client, raw_libvirt,
                                                      django_capture_on_commit_callbacks):  # fmt: skip
    page = admin_client.get(f"/vms/{IDLE}/xml/").content.decode()
    assert "&lt;name&gt;idle&lt;/name&gt;" in page
    xml = hw.editable_xml(__import__("hosts.connections").connections.host_connection(host), IDLE)
    edited = xml.replace("<on_crash>destroy</on_crash>", "<on_crash>restart</on_crash>")
    assert edited != xml
    review = admin_client.post(f"/vms/{IDLE}/xml/", {"xml": edited}).content.decode()
    assert "Changes to save" in review and "diff-add" in review and "on_crash&gt;restart" in review
    with django_capture_on_commit_callbacks(execute=True):
        saved = admin_client.post(f"/vms/{IDLE}/xml/", {"xml": edited, "confirm": "1"})
    assert saved.status_code == 302
    assert "<on_crash>restart</on_crash>" in dom(raw_libvirt, host, IDLE).XMLDesc(0)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda x: x.replace("<name>idle</name>", "<name>other</name>"), "the XML renames the VM"),
        (lambda x: x.replace(IDLE, "11111111-1111-4111-8111-111111111999"), "a VM keeps its UUID"),
        (lambda x: x.replace("<vcpu", "<vcpux").replace("</vcpu>", "</vcpux>"), "does not follow libvirt's domain schema"),
    ],
)  # fmt: skip
def test_an_edit_libvirt_or_virtfleet_refuses_leaves_the_definition_alone(host, change, raw_libvirt, edit, message):
    from hosts.connections import host_connection

    before = dom(raw_libvirt, host, IDLE).XMLDesc(2)
    job = change(IDLE, "xml", xml=edit(hw.editable_xml(host_connection(host), IDLE)))
    assert job.status == "failed" and message in job.error
    assert dom(raw_libvirt, host, IDLE).XMLDesc(2) == before


def test_the_xml_page_says_what_is_wrong_with_a_broken_xml(host, admin_client):
    page = admin_client.post(f"/vms/{IDLE}/xml/", {"xml": "<domain><name>idle"}).content.decode()
    assert "The XML is not well-formed" in page


def test_the_hardware_page_and_the_api(host, admin_client, django_capture_on_commit_callbacks):
    page = admin_client.get(f"/vms/{WEB}/hardware/").content.decode()
    assert "vda" in page and "52:54:00:aa:03:01" in page and 'data-action="attach-disk"' in page
    with django_capture_on_commit_callbacks(execute=True):
        made = admin_client.post(f"/api/vms/{WEB}/hardware/vcpus/", {"vcpus": 2}, content_type="application/json")
    assert made.status_code == 202
    bad = admin_client.post(f"/api/vms/{WEB}/hardware/vcpus/", {"vcpus": 2, "cores": 1},
                            content_type="application/json")  # fmt: skip
    assert bad.status_code == 400 and "cores" in bad.json()["error"]
    definition = admin_client.get(f"/api/vms/{WEB}/definition/").json()
    assert "<name>web</name>" in definition["xml"]


def test_pending_changes_in_words():
    live = "<domain><vcpu current='2'>4</vcpu><memory unit='MiB'>512</memory><devices><disk><target dev='vda'/></disk></devices></domain>"
    conf = ("<domain><vcpu current='4'>4</vcpu><memory unit='MiB'>1024</memory><devices><disk><target dev='vda'/>"
            "</disk><disk><target dev='vdb'/></disk><interface><mac address='52:54:00:00:00:01'/></interface></devices></domain>")  # fmt: skip
    assert hw.pending_changes(live, conf) == [
        "4 vCPUs (runs with 2)", "1024 MiB of memory (runs with 512 MiB)", "disk vdb is added",
        "NIC 52:54:00:00:00:01 is added",
    ]  # fmt: skip
    assert hw.pending_changes(live, live) == []
