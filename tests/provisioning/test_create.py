"""Creating VMs against the libvirt test driver: plans from OS presets and the host's capabilities,
each install source, refusals before anything is made, rollback of what a failed job made, from
XML (persistent and transient), the best host, rights, secrets, pages and API. What the test driver
cannot do (booting guests, uploads of the seed, domain capabilities) is in tests/e2e/test_provisioning.py."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from core.errors import Forbidden, ServiceError
from jobs.models import Job
from provisioning import services
from provisioning.kinds import looks_like_disk_image
from provisioning.models import HostCapabilities
from storage.models import StoragePool, Volume
from vms.models import VM

WEB = "11111111-1111-4111-8111-111111111301"


@pytest.fixture
def host(add_host):
    return add_host("prov", "host-provision.xml")


@pytest.fixture
def pool(host):
    return StoragePool.objects.get(host=host, name="images")


def vol(pool, name):
    return Volume.objects.get(pool=pool, name=name)


@pytest.fixture
def create(on_commit, admin_user):
    def run(host, user=None, **params):
        with on_commit():
            job, why = services.vm_create_request(host=host, params=params, user=user or admin_user)
        job.refresh_from_db()
        return job, why

    return run


def libvirt_names(raw_libvirt, host):
    return sorted(d.name() for d in raw_libvirt(host).listAllDomains(0))


def pool_names(raw_libvirt, host):
    return sorted(raw_libvirt(host).storagePoolLookupByName("images").listVolumes())


def test_capabilities_are_read_with_the_sync(host):
    row = HostCapabilities.objects.get(host=host)
    assert row.reported is False  # the test driver has no domain capabilities
    assert [g["arch"] for g in row.data["guests"]] == ["i686", "i686"]


def test_an_imported_disk_becomes_a_running_vm_without_new_volumes(host, pool, create, raw_libvirt):
    before = pool_names(raw_libvirt, host)
    job, why = create(host, name="new1", source="import", image_volume=vol(pool, "base.qcow2").pk, memory_mib=512)
    assert job.status == "succeeded", job.error
    assert why == ""
    vm = VM.objects.get(name="new1")
    assert (vm.state, vm.memory_mib, vm.host_id) == ("running", 512, host.pk)
    assert [(d["target"], d["volume"], d["bus"]) for d in vm.disks] == [("vda", "base.qcow2", "virtio")]
    assert vm.graphics_password is True  # a VNC password was generated...
    assert "passwd" not in vm.xml  # ...and is never stored
    assert pool_names(raw_libvirt, host) == before
    assert Job.objects.get(pk=job.pk).vm_id == vm.pk  # the VM's history starts with its creation
    assert AuditEvent.objects.filter(action="vm.create").exists()  # the request, and its end:
    assert AuditEvent.objects.filter(action="job.finished", details__kind="vm.create", outcome="ok").exists()


def test_an_iso_install_gets_a_new_disk_and_boots_from_the_cd_first(host, pool, create, raw_libvirt):
    job, _ = create(host, name="inst", source="iso", iso_volume=vol(pool, "install.iso").pk, disk_pool=pool.pk,
                    disk_size="8G", extra_disks=["1G"], start=False, os="debian11")  # fmt: skip
    assert job.status == "succeeded", job.error
    assert "inst.qcow2" in pool_names(raw_libvirt, host) and "inst-1.qcow2" in pool_names(raw_libvirt, host)
    assert vol(pool, "inst.qcow2").capacity == 8 * 2**30
    vm = VM.objects.get(name="inst")
    assert vm.state == "shutoff"
    devices = [(d["device"], d["volume"]) for d in vm.disks]
    assert devices == [("cdrom", "install.iso"), ("disk", "inst.qcow2"), ("disk", "inst-1.qcow2")]
    xml = raw_libvirt(host).lookupByName("inst").XMLDesc(0)
    assert "<boot order='1'/>" in xml and "<boot order='2'/>" in xml
    assert "http://debian.org/debian/11" in xml  # the OS recorded as libosinfo metadata, like virt-install
    plan = job.params["plan"]
    assert (plan["os_name"], plan["disk_bus"], plan["nic_model"]) == ("Debian 11", "virtio", "virtio")
    assert plan["nics"] == [{"type": "network", "source": "default", "model": "virtio"}]


@pytest.mark.parametrize(
    ("params", "message", "field"),
    [
        ({"name": "web", "source": "import", "image": "spare.qcow2"}, "prov already has a VM named web", "params.name"),
        ({"name": "a/b", "source": "import", "image": "spare.qcow2"}, "A VM name is 1 to 63 letters", "params.name"),
        ({"name": "n", "source": "iso", "disk_size": "8G"}, "Choose the ISO to install from", "params.iso_volume"),
        ({"name": "n", "source": "iso", "iso": "base.qcow2", "disk_size": "8G"}, "base.qcow2 is not an ISO image",
         "params.iso_volume"),
        ({"name": "n", "source": "import", "image": "install.iso"}, "is an ISO image, not a disk image",
         "params.image_volume"),
        ({"name": "n", "source": "import", "image": "web.qcow2"}, "web.qcow2 is the disk of web", "params.image_volume"),
        ({"name": "n", "source": "cloud", "image": "install.iso", "disk_size": "8G"}, "not a cloud disk image",
         "params.image_volume"),
        ({"name": "n", "source": "cloud", "image": "cloud.qcow2", "disk_size": "1G"},
         "at least the cloud image's 2 GiB", "params.disk_size"),
        ({"name": "n", "source": "none", "disk_size": "500G", "disk_format": "raw"},
         "needs 500 GiB and pool images has", "params.disk_size"),
        ({"name": "n", "source": "import", "image": "spare.qcow2", "firmware": "efi"}, "no UEFI firmware",
         "params.firmware"),
        ({"name": "n", "source": "import", "image": "spare.qcow2", "os": "nosuchos"}, "osinfo-db knows no OS",
         "params.os"),
        ({"name": "n", "source": "import", "image": "spare.qcow2", "nics": [{"network": "nowhere"}]},
         "prov has no network named nowhere", "params.nics"),
        ({"name": "n", "source": "import", "image": "spare.qcow2", "ci_user": "bob"}, "cloud-init settings are for",
         "params.ci_user"),
        ({"name": "n", "source": "cloud", "image": "cloud.qcow2", "disk_size": "8G", "ci_user_data": "#cloud-config\nusers: [\n"},
         "user-data:", "params.ci_user_data"),
        ({"name": "n", "source": "cloud", "image": "cloud.qcow2", "disk_size": "8G", "ci_ssh_keys": ["not a key"]},
         "is not an SSH public key", "params.ci_ssh_keys"),
        ({"name": "n", "source": "import", "image": "spare.qcow2", "bogus": 1}, "Unknown option(s) for vm.create: bogus",
         "params"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_before_anything_is_made(host, pool, create, raw_libvirt, params, message, field):
    domains, volumes = libvirt_names(raw_libvirt, host), pool_names(raw_libvirt, host)
    for key, param in (("image", "image_volume"), ("iso", "iso_volume")):
        if key in params:
            params[param] = vol(pool, params.pop(key)).pk
    if params["source"] in ("iso", "none", "cloud"):
        params["disk_pool"] = pool.pk
    with pytest.raises(ServiceError) as refused:
        create(host, **params)
    assert message in refused.value.message
    assert (refused.value.field or "").startswith(field)
    assert libvirt_names(raw_libvirt, host) == domains and pool_names(raw_libvirt, host) == volumes
    assert not Job.objects.filter(kind="vm.create").exists()


def test_a_failed_cloud_creation_removes_the_volumes_it_made_and_says_so(host, pool, create, raw_libvirt):
    # The test driver has no volume uploads: the seed step fails after the overlay was made.
    domains, volumes = libvirt_names(raw_libvirt, host), pool_names(raw_libvirt, host)
    job, _ = create(host, name="cloudy", source="cloud", image_volume=vol(pool, "cloud.qcow2").pk, disk_pool=pool.pk,
                    disk_size="10G", ci_user="alice", ci_password="s3cret-Pass", ci_ssh_keys=["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO6QXmUWnShNGsmUIFqcxQ6vOGn7kCIBGVzOHv7Q2v3m a@b"])  # fmt: skip
    assert job.status == "failed"
    assert "undone: deleted the volume(s) it had made: cloudy.qcow2, cloudy-seed.iso" in job.error
    assert libvirt_names(raw_libvirt, host) == domains and pool_names(raw_libvirt, host) == volumes
    assert not Volume.objects.filter(name__startswith="cloudy").exists()
    assert "cloud.qcow2" in volumes  # the cloud image itself is never touched


def test_the_cloud_init_password_is_kept_only_as_a_hash(host, pool, create):
    job, _ = create(host, name="cloudy", source="cloud", image_volume=vol(pool, "cloud.qcow2").pk, disk_pool=pool.pk,
                    disk_size="10G", ci_user="alice", ci_password="s3cret-Pass")  # fmt: skip
    stored = str(job.params) + str(list(AuditEvent.objects.values_list("details", flat=True)))
    assert "s3cret-Pass" not in stored
    assert job.params["plan"]["cloud_init"]["password_hash"].startswith("$6$")
    shown = str(job.shown_params) + str(list(AuditEvent.objects.values_list("details", flat=True)))
    assert job.params["ci_password_hash"] not in shown and "(hidden)" in shown  # not even the hash is shown
    overlay = job.params["plan"]["volumes"][0]
    assert (overlay["format"], overlay["backing_path"]) == ("qcow2", "/var/lib/images/cloud.qcow2")


def test_a_vm_from_xml_is_defined_or_created_transient(host, on_commit, admin_user, raw_libvirt):
    xml = ("<domain type='test'><name>{name}</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>"
           "<os><type arch='i686'>hvm</type></os></domain>")  # fmt: skip
    for name, transient in (("fromxml", False), ("passing", True)):
        with on_commit():
            job = services.vm_define_request(host=host, params={"xml": xml.format(name=name), "transient": transient,
                                                                "start": False}, user=admin_user)  # fmt: skip
        job.refresh_from_db()
        assert job.status == "succeeded", job.error
        vm = VM.objects.get(name=name)
        assert (vm.persistent, vm.state) == (not transient, "running" if transient else "shutoff")
    assert "transient" in job.message


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("", "the XML is empty"),
        ("<domain><name>x</name>", "not well-formed"),
        ("<network><name>x</name></network>", "describes a <network>, not a <domain>"),
        ("<domain type='test'><memory>1</memory></domain>", "has no <name>"),
        ("<domain type='test'><name>web</name><memory>1</memory></domain>", "prov already has a VM named web"),
        (f"<domain type='test'><name>other</name><uuid>{WEB}</uuid></domain>", "the XML's UUID is that of web on prov"),
        ("<!DOCTYPE d [<!ENTITY e 'x'>]><domain><name>&e;</name></domain>", "refused"),
    ],
)
def test_bad_xml_is_refused_in_plain_words(host, admin_user, xml, message):
    with pytest.raises(ServiceError) as refused:
        services.vm_define_request(host=host, params={"xml": xml}, user=admin_user)
    assert message in refused.value.message


def test_libvirt_refusing_the_xml_is_said_and_nothing_stays(host, on_commit, admin_user, raw_libvirt):
    before = libvirt_names(raw_libvirt, host)
    with on_commit():
        job = services.vm_define_request(host=host, user=admin_user, params={
            "xml": "<domain type='test'><name>bad</name><memory>1</memory><vcpux/></domain>"})  # fmt: skip
    job.refresh_from_db()
    assert job.status == "failed" and "libvirt refused the XML" in job.error
    assert "does not follow libvirt's domain schema" in job.error
    assert libvirt_names(raw_libvirt, host) == before


def test_the_best_host_is_the_one_with_most_free_memory_and_says_why(add_host, create, admin_user):
    small = add_host("prov", "host-provision.xml")
    big = add_host("prov2", "host-a.xml")
    type(small).objects.filter(pk=small.pk).update(free_memory_bytes=2 * 2**30, memory_bytes=8 * 2**30)
    type(big).objects.filter(pk=big.pk).update(free_memory_bytes=6 * 2**30, memory_bytes=8 * 2**30)
    chosen, why = services.host_choose(user=admin_user, memory_mib=1024)
    assert chosen == big
    assert "prov2: 6 GiB free of 8 GiB" in why and "the most free memory of 2 connected host(s)" in why


def test_creating_needs_the_configure_right(host, pool, make_user):
    viewer, operator = make_user("v", "viewer"), make_user("o", "operator")
    params = {"name": "n", "source": "import", "image_volume": vol(pool, "spare.qcow2").pk}
    with pytest.raises(Forbidden):
        services.vm_create_request(host=host, params=params, user=viewer)
    job, _ = services.vm_create_request(host=host, params=params, user=operator)
    assert job.kind == "vm.create"


def test_disk_image_sniffing():
    assert looks_like_disk_image(b"QFI\xfb" + bytes(600)) == ""
    mbr = bytearray(1024)
    mbr[510:512] = b"\x55\xaa"
    assert looks_like_disk_image(bytes(mbr)) == ""
    iso = bytearray(0x9000)
    iso[0x8001:0x8006] = b"CD001"
    assert "ISO 9660" in looks_like_disk_image(bytes(iso))
    assert "empty" in looks_like_disk_image(bytes(4096))
    assert "no disk image header" in looks_like_disk_image(b"hello world, a text file\n" * 100)


# --- pages and API ----------------------------------------------------------------------------------------
def test_the_new_vm_page_offers_what_the_host_has(host, pool, admin_client):
    page = admin_client.get(f"/vms/new/?host={host.pk}").content.decode()
    assert "install.iso" in page and "base.qcow2" in page and "web.qcow2" not in page  # web's disk is in use
    assert "network default" in page and 'value="efi"' not in page  # the test driver offers no UEFI
    assert "debian11" in page  # osinfo-db presets


def test_the_new_vm_form_shows_refusals_beside_their_field_and_keeps_what_was_typed(host, pool, admin_client):
    page = admin_client.post("/vms/new/", {"host": host.pk, "name": "web", "source": "import",
                                           "image_volume": vol(pool, "spare.qcow2").pk, "graphics": "on",
                                           "start": "on"})  # fmt: skip
    assert page.status_code == 200
    body = page.content.decode()
    assert 'data-error-for="name"' in body and "prov already has a VM named web" in body
    assert 'value="web"' in body


def test_the_new_vm_form_creates_and_goes_to_the_job(host, pool, admin_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        page = admin_client.post("/vms/new/", {"host": host.pk, "name": "fromform", "source": "import",
                                               "image_volume": vol(pool, "spare.qcow2").pk, "memory_mib": "256",
                                               "nic0": "network:default", "graphics": "on", "start": "on"})  # fmt: skip
    job = Job.objects.get(kind="vm.create")
    assert page.status_code == 302 and page["Location"] == f"/jobs/{job.pk}/"
    assert job.status == "succeeded", job.error
    assert VM.objects.get(name="fromform").memory_mib == 256


def test_the_api_creates_on_the_best_host_and_refuses_bad_input(host, pool, admin_client,
                                                                django_capture_on_commit_callbacks):  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        made = admin_client.post("/api/vms/create/", {"name": "viaapi", "source": "import", "memory_mib": 256,
                                                      "image_volume": vol(pool, "spare.qcow2").pk},
                                 content_type="application/json")  # fmt: skip
    assert made.status_code == 202, made.content
    assert "prov:" in made.json()["placement"]
    bad = admin_client.post("/api/vms/create/", {"host": host.pk, "name": "x", "source": "iso"},
                            content_type="application/json")  # fmt: skip
    assert bad.status_code == 400 and "Choose the ISO" in bad.json()["error"]
    presets = admin_client.get("/api/os-presets/?search=debian").json()
    assert any(p["short_id"] == "debian11" and p["disk_bus"] == "virtio" for p in presets)
    caps = admin_client.get(f"/api/hosts/{host.pk}/capabilities/").json()
    assert caps["reported"] is False and caps["capabilities"]["guests"]


def test_a_creation_whose_worker_died_is_undone_by_what_it_noted(host, pool, create, raw_libvirt):
    """The worker died after it made the disk and defined the domain, before it started it: the
    reaper finds the VM not running as asked, and removes the domain and the volume it had noted."""
    from jobs import engine

    job, _ = create(host, name="halfway", source="none", disk_pool=pool.pk, disk_size="1G", start=False)
    assert job.status == "succeeded", job.error
    plan = job.params["plan"]
    plan["start"] = True  # as if it still had to start it
    Job.objects.filter(pk=job.pk).update(status="running", worker="celery@gone", finished_at=None, params=job.params,
                                         result={"volumes": [{"pool": "images", "name": "halfway.qcow2"}],
                                                 "defined": True})  # fmt: skip
    raw_libvirt(host).lookupByName("halfway")  # there, as the dead worker left it
    ended = engine.jobs_reap(worker_alive=lambda name: False)
    job.refresh_from_db()
    assert [j.pk for j in ended] == [job.pk] and job.status == "failed"
    assert "interrupted" in job.error and "the VM exists but is shutoff" in job.error
    assert "undone: undefined it; deleted the volume(s) it had made: halfway.qcow2" in job.error
    assert "halfway" not in libvirt_names(raw_libvirt, host) and "halfway.qcow2" not in pool_names(raw_libvirt, host)
