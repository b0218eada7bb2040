"""Cloning VMs against the libvirt test driver, where it answers (define, createXMLFrom, volumes with a
backing store, redefine): full and linked clones and what they change, the refusals before anything
is made, undo after a failure, the form page and the API's bad input. What the test driver cannot do
(block copies, streams between hosts, booting the clone, cancel and a worker's death mid-copy) is in
tests/e2e/test_clone.py on the lab's real hosts."""

from __future__ import annotations

from unittest import mock

import pytest

from core.errors import Forbidden, ServiceError
from jobs.models import Job
from provisioning import services
from storage.models import StoragePool, Volume
from virt import OperationFailed
from vms.models import VM

SRC = "11111111-1111-4111-8111-111111111401"
RUNNER = "11111111-1111-4111-8111-111111111402"


@pytest.fixture
def host(add_host):
    return add_host("clone1", "host-clone.xml")


@pytest.fixture(autouse=True)
def _tiny(host):
    # the test driver reports every pool as 100 GiB: the room check reads the inventory's copy
    StoragePool.objects.filter(host=host, name="tiny").update(capacity=10 * 2**20, available=10 * 2**20)


@pytest.fixture
def other(add_host):
    return add_host("clone2", "host-clone2.xml")


@pytest.fixture
def src(host):
    return VM.objects.get(uuid=SRC)


@pytest.fixture
def clone(on_commit, admin_user):
    def run(vm, user=None, **params):
        with on_commit():
            job = services.vm_clone_request(vm=vm, params=params, user=user or admin_user)
        job.refresh_from_db()
        return job

    return run


def volumes(raw_libvirt, host, pool="images"):
    return sorted(raw_libvirt(host).storagePoolLookupByName(pool).listVolumes())


def domains(raw_libvirt, host):
    return sorted(d.name() for d in raw_libvirt(host).listAllDomains(0))


def test_a_full_clone_copies_writable_disks_shares_the_cd_and_gets_its_own_identity(host, src, clone, raw_libvirt):
    before = raw_libvirt(host).lookupByUUIDString(SRC).XMLDesc(0)
    job = clone(src)
    assert job.status == "succeeded", job.error
    assert job.message.startswith("cloned src as src-clone: 2 disk(s) copied, 1 shared")
    assert {"src-clone-vda.qcow2", "src-clone-vdb.raw"} <= set(volumes(raw_libvirt, host))
    dom = raw_libvirt(host).lookupByName("src-clone")
    xml = dom.XMLDesc(3)  # secure and inactive: with the VNC password
    assert dom.UUIDString() == job.params["uuid"] != SRC
    assert "/var/lib/images/src-clone-vda.qcow2" in xml and "/var/lib/images/src-clone-vdb.raw" in xml
    assert "/var/lib/images/install.iso" in xml  # the CD-ROM is shared
    assert "52:54:00:aa:04:01" not in xml and "sekrit12" not in xml and "port='5911'" not in xml
    assert raw_libvirt(host).lookupByUUIDString(SRC).XMLDesc(0) == before  # the source is as it was
    vm = VM.objects.get(uuid=job.params["uuid"])
    assert (vm.name, vm.state, vm.host_id) == ("src-clone", "shutoff", host.pk)
    # the next automatic name is virt-clone's next one
    again = clone(VM.objects.get(uuid=SRC))
    assert again.status == "succeeded", again.error
    assert again.params["name"] == "src-clone1"


def test_a_clone_into_another_pool_and_started(host, src, clone, raw_libvirt):
    pool = StoragePool.objects.get(host=host, name="images")
    job = clone(src, name="copy2", disks=[{"target": "vdb", "pool": pool.pk}], start=True)
    assert job.status == "succeeded", job.error
    assert "started" in job.message
    assert raw_libvirt(host).lookupByName("copy2").isActive()


@pytest.mark.parametrize(
    ("vm_uuid", "params", "message", "field"),
    [
        (SRC, {"name": "runner"}, "clone1 already has a VM named runner", "params.name"),
        (RUNNER, {}, "it is running: accept a pause", "params.running"),
        (RUNNER, {"mode": "linked", "running": "pause"}, "a linked clone needs a source that is shut off", "params.mode"),
        (SRC, {"disks": [{"target": "vda", "pool": "TINY"}]}, "the copies need 300 MiB and pool tiny on clone1 has 10 MiB free", "params.disks"),
        (SRC, {"disks": [{"target": "vdz"}]}, "src has no disk vdz to copy", "params.disks"),
        (SRC, {"disks": [{"target": "sda"}]}, "src has no disk sda to copy", "params.disks"),
        (SRC, {"mode": "linked"}, "accept freezing it (freeze_source", "params.freeze_source"),
        (SRC, {"freeze_source": True}, "freezing the source is for a linked clone", "params.freeze_source"),
        (SRC, {"host": "OTHER"}, "clone2 has no network named default", "params.host"),
        (SRC, {"host": "OTHER", "mode": "linked", "freeze_source": True}, "it stays on the source's host", "params.mode"),
        (RUNNER, {"host": "OTHER", "running": "live"}, "a live block copy stays on the VM's host", "params.running"),
        (SRC, {"host": 999999}, "There is no such target host", "params.host"),
        (SRC, {"mode": "copy"}, "is not a valid choice", "params.mode"),
        (SRC, {"name": "a/b"}, "A VM name is 1 to 63 letters", "params.name"),
        (SRC, {"bandwidth": -1}, "bandwidth must be between 0", "params.bandwidth"),
        (SRC, {"disks": "vda"}, "", "params.disks"),
        (SRC, {"bogus": 1}, "Unknown option(s) for vm.clone: bogus", "params"),
    ],
)  # fmt: skip
def test_what_cannot_be_cloned_is_refused_before_anything_is_made(host, other, clone, raw_libvirt, vm_uuid, params,
                                                                 message, field):  # fmt: skip
    before = (volumes(raw_libvirt, host), domains(raw_libvirt, host), domains(raw_libvirt, other))
    if params.get("host") == "OTHER":
        params["host"] = other.pk
    for d in params.get("disks") or ():
        if isinstance(d, dict) and d.get("pool") == "TINY":
            d["pool"] = StoragePool.objects.get(host=host, name="tiny").pk
    with pytest.raises(ServiceError) as refused:
        clone(VM.objects.get(uuid=vm_uuid), **params)
    assert message in refused.value.message
    assert (refused.value.field or "").startswith(field)
    assert (volumes(raw_libvirt, host), domains(raw_libvirt, host), domains(raw_libvirt, other)) == before
    assert not Job.objects.filter(kind="vm.clone").exists()


def test_a_running_source_cannot_be_cloned_without_a_choice_even_if_it_started_after_the_request(
    host, src, clone, raw_libvirt, on_commit, admin_user
):
    with on_commit():
        job = services.vm_clone_request(vm=src, params={"name": "late"}, user=admin_user)
        raw_libvirt(host).lookupByUUIDString(SRC).create()  # started behind Virtfleet's back
    job.refresh_from_db()
    assert job.status == "failed"
    assert "the VM is running now" in job.error
    assert "late" not in domains(raw_libvirt, host) and not any(
        v.startswith("late") for v in volumes(raw_libvirt, host)
    )


def test_a_name_taken_behind_virtfleets_back_fails_the_job_and_makes_nothing(host, src, clone, raw_libvirt):
    from tests.helpers import domain_xml

    raw_libvirt(host).defineXML(domain_xml("sneaky", "11111111-1111-4111-8111-111111111499"))
    before = volumes(raw_libvirt, host)
    job = clone(src, name="sneaky")
    assert job.status == "failed"
    assert "clone1 already has a domain named sneaky" in job.error
    assert volumes(raw_libvirt, host) == before


def test_a_failed_copy_removes_the_copies_it_made_and_keeps_a_volume_that_is_not_its_own(host, src, clone, raw_libvirt):
    pool = raw_libvirt(host).storagePoolLookupByName("images")
    pool.createXML("<volume><name>src-clone-vdb.raw</name><capacity>1024</capacity></volume>", 0)  # not in the DB yet
    job = clone(src)
    assert job.status == "failed"
    assert "undone: deleted the volume(s) it had made: src-clone-vda.qcow2" in job.error
    assert "src-clone-vda.qcow2" not in volumes(raw_libvirt, host)
    assert "src-clone-vdb.raw" in volumes(raw_libvirt, host)  # someone else's: kept
    assert "src-clone" not in domains(raw_libvirt, host)
    assert {"src.qcow2", "src-data.raw"} <= set(volumes(raw_libvirt, host))  # source disks never touched


def test_a_linked_clone_with_freeze_puts_both_on_overlays_of_the_source_disks(host, src, clone, raw_libvirt):
    job = clone(src, name="lnk", mode="linked", freeze_source=True)
    assert job.status == "succeeded", job.error
    assert "src frozen on its own overlay" in job.message
    pool = raw_libvirt(host).storagePoolLookupByName("images")
    for name, base in (("lnk-vda.qcow2", "src.qcow2"), ("src-vda-top.qcow2", "src.qcow2"),
                       ("lnk-vdb.qcow2", "src-data.raw"), ("src-vdb-top.qcow2", "src-data.raw")):  # fmt: skip
        assert f"/var/lib/images/{base}" in pool.storageVolLookupByName(name).XMLDesc(0)  # backed by it
    source_xml = raw_libvirt(host).lookupByUUIDString(SRC).XMLDesc(3)
    assert "src-vda-top.qcow2" in source_xml and "src-vdb-top.qcow2" in source_xml
    assert "sekrit12" in source_xml  # its VNC password survived the redefinition
    assert "lnk-vda.qcow2" in raw_libvirt(host).lookupByName("lnk").XMLDesc(0)


def test_a_failure_after_freezing_puts_the_source_back_on_its_own_disks(host, src, clone, raw_libvirt):
    before = raw_libvirt(host).lookupByUUIDString(SRC).XMLDesc(3)
    with mock.patch("virt.builder.domain_define", side_effect=OperationFailed("define the domain: disk full")):
        job = clone(src, name="lnk", mode="linked", freeze_source=True)
    assert job.status == "failed"
    assert "put src's own disk(s) vda, vdb back in its definition" in job.error
    assert raw_libvirt(host).lookupByUUIDString(SRC).XMLDesc(3) == before
    assert not [v for v in volumes(raw_libvirt, host) if v.startswith("lnk") or "-top" in v]


def test_a_template_is_linked_without_freezing(host, src, clone, raw_libvirt):
    from hosts.connections import host_connection
    from virt.template import template_mark
    from vms.inventory import vm_reread

    template_mark(host_connection(host), SRC, marked_at="2026-12-02T00:00:00Z")  # marked in libvirt itself
    vm_reread(host=host, uuid=SRC)
    src.refresh_from_db()
    assert src.template
    before = raw_libvirt(host).lookupByUUIDString(SRC).XMLDesc(0)
    job = clone(src, name="fromtpl", mode="linked")
    assert job.status == "succeeded", job.error
    assert raw_libvirt(host).lookupByUUIDString(SRC).XMLDesc(0) == before


def test_the_clone_needs_the_right_to_configure_on_the_source_and_the_target_host(host, other, src, clone, make_user):
    from hosts.models import Host

    viewer = make_user("vic", "viewer")
    with pytest.raises(Forbidden):
        clone(src, user=viewer)
    assert Host.objects.count() == 2 and not Job.objects.filter(kind="vm.clone").exists()


def test_the_clone_form_shows_each_disk_and_the_refusal_beside_its_field(host, src, admin_client):
    page = admin_client.get(f"/vms/{SRC}/clone/")
    assert page.status_code == 200
    text = page.content.decode()
    assert 'data-disk="vda"' in text and 'data-disk="sda"' in text
    assert "shared: a cdrom: its medium is shared" in text
    assert "src-clone" in text  # the default name
    tiny = StoragePool.objects.get(host=host, name="tiny")
    posted = admin_client.post(f"/vms/{SRC}/clone/", {"name": "x1", "host": host.pk, "mode": "full",
                                                      "pool_vda": tiny.pk, "pool_vdb": tiny.pk})  # fmt: skip
    assert posted.status_code == 200
    assert 'data-error-for="disks"' in posted.content.decode()
    assert "10 MiB free" in posted.content.decode()
    posted = admin_client.post(f"/vms/{SRC}/clone/", {"name": "x1", "host": host.pk, "mode": "full"})
    assert posted.status_code == 302
    job = Job.objects.get(kind="vm.clone")
    assert posted["Location"] == f"/jobs/{job.pk}/"
    assert admin_client.get(f"/jobs/{job.pk}/").status_code == 200  # its plan shown on the job page


def test_the_vm_page_has_a_clone_button(host, src, admin_client):
    assert 'data-action="clone"' in admin_client.get(f"/vms/{SRC}/").content.decode()


@pytest.mark.parametrize(
    "body",
    [[], "x", {"name": ["x"]}, {"disks": [{"pool": 1}]}, {"disks": [{"target": "vda", "pool": "x"}]}, {"host": "abc"},
     {"host": {"a": 1}}, {"mode": None}, {"running": "sometimes"}, {"start": "maybe"}, {"bandwidth": "fast"},
     {"disks": [{"target": "vda"}, {"target": "vda"}]}, {"mode": "linked", "bandwidth": 5}],
)  # fmt: skip
def test_bad_input_to_the_api_is_a_400_that_says_what_is_wrong(host, src, admin_client, body):
    response = admin_client.post(f"/api/vms/{SRC}/clone/", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]
    assert not Job.objects.filter(kind="vm.clone").exists()


def test_the_api_answers_202_with_the_job(host, src, admin_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/api/vms/{SRC}/clone/", {"name": "api1"}, content_type="application/json")
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["id"])
    assert job.status == "succeeded", job.error
    assert Volume.objects.filter(name="api1-vda.qcow2").exists()
