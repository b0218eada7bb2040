"""Storage against the libvirt test driver (pools: define, build, start, stop, autostart, undefine;
volumes: create, clone, delete). What it cannot do (upload, download, resize, wipe, copy) is
tested on the lab's real hosts (tests/e2e/test_storage.py)."""

from __future__ import annotations

import pytest
from guardian.shortcuts import assign_perm

from core.errors import Forbidden, ServiceError
from jobs.models import Job
from storage import services
from storage.models import HostStorage, StoragePool, Volume
from storage.selectors import vm_disks, vms_using
from vms.models import VM

DATA1 = "11111111-1111-4111-8111-111111111104"  # a shut-off VM whose disk is images/data-1.qcow2


@pytest.fixture
def storage_host(add_host):
    return add_host("storage", "host-storage.xml")


@pytest.fixture
def images(storage_host):
    return StoragePool.objects.get(host=storage_host, name="images")


@pytest.fixture
def run(on_commit, admin_user):
    """Start a storage job as an administrator, let the (eager) worker run it, return it ended."""

    def start(request, **kwargs):
        with on_commit():
            job = request(user=admin_user, **kwargs)
        job.refresh_from_db()
        return job

    return start


def test_the_sync_reads_pools_and_volumes(storage_host, images):
    assert (images.type, images.state, images.target_path, images.capacity) == (
        "dir",
        "active",
        "/var/lib/images",
        100 * 2**30,
    )
    volume = images.volumes.get()
    assert (volume.name, volume.path, volume.capacity) == ("data-1.qcow2", "/var/lib/images/data-1.qcow2", 2**30)
    caps = HostStorage.objects.get(host=storage_host)
    assert not caps.reported and "dir" in caps.pool_types  # the test driver does not report its pool types


def test_which_vms_use_a_volume_and_the_vm_page_lists_its_disks(storage_host, images, admin_client):
    volume = images.volumes.get()
    assert [vm.name for vm in vms_using(volume=volume)] == ["data-1"]
    disks = vm_disks(VM.objects.get(uuid=DATA1))
    assert len(disks) == 1 and disks[0]["volume_row"] == volume and disks[0]["bus"] == "virtio"
    page = admin_client.get(f"/vms/{DATA1}/").content.decode()
    assert "Disks" in page and "data-1.qcow2" in page and "images" in page and "virtio" in page
    pool_page = admin_client.get(f"/storage/pools/{images.pk}/").content.decode()
    assert f'href="/vms/{DATA1}/"' in pool_page  # "used by" links the VM


def test_create_clone_and_delete_volumes(storage_host, images, run):
    job = run(
        services.volume_create_request, pool=images, name="new.qcow2", params={"capacity": "2G", "format": "qcow2"}
    )
    assert job.status == "succeeded", job.error
    assert job.message == "created new.qcow2: 2 GiB qcow2" and job.target_name == "volume new.qcow2 in images"
    new = Volume.objects.get(pool=images, name="new.qcow2")
    assert new.capacity == 2 * 2**30 and new.format == "qcow2"  # re-read from the host after the job
    job = run(services.volume_job_request, volume=new, action="clone", params={"name": "copy.qcow2"})
    assert job.status == "succeeded" and Volume.objects.filter(pool=images, name="copy.qcow2").exists()
    job = run(services.volume_job_request, volume=Volume.objects.get(name="copy.qcow2"), action="delete")
    assert job.status == "succeeded" and not Volume.objects.filter(name="copy.qcow2").exists()


@pytest.mark.parametrize(
    ("name", "params", "says"),
    [
        ("big.raw", {"capacity": "200G", "format": "raw"}, "it needs 200 GiB and pool images has"),
        ("../etc", {"capacity": "1G"}, "no slashes"),
        ("x", {"capacity": "ten gigs"}, "capacity: give a size such as 20G"),
        ("x", {"capacity": "1Q"}, "unknown unit 'q'"),
        ("x", {"capacity": "1G", "format": "vmdk"}, '"vmdk" is not a valid choice'),
        ("x", {"capacity": "1G", "format": "raw", "preallocation": "metadata"}, "Metadata preallocation is for qcow2"),
        ("data-1.qcow2", {"capacity": "1G"}, "already has a volume named data-1.qcow2"),
        ("x", {"capacity": "1G", "sparse": True}, "Unknown option(s) for volume.create: sparse"),
    ],
)
def test_bad_volume_input_is_refused_before_libvirt_and_makes_nothing(images, admin_user, name, params, says):
    with pytest.raises(ServiceError) as exc:
        services.volume_create_request(pool=images, name=name, params=params, user=admin_user)
    assert says in exc.value.message
    assert not Job.objects.exists() and images.volumes.count() == 1


def test_a_format_the_host_cannot_make_in_that_pool_is_refused(storage_host, images, admin_user):
    # what a real host's storage pool capabilities say (the test driver reports none)
    HostStorage.objects.filter(host=storage_host).update(reported=True, volume_formats={"dir": ["raw", "iso"]})
    with pytest.raises(ServiceError, match="storage cannot make qcow2 volumes in a dir pool \\(it makes raw, iso\\)"):
        services.volume_create_request(pool=images, name="x.qcow2", params={"capacity": "1G"}, user=admin_user)
    HostStorage.objects.filter(host=storage_host).update(volume_formats={})  # e.g. a logical pool: no formats
    with pytest.raises(ServiceError, match="a dir pool makes raw volumes only, not qcow2"):
        services.volume_job_request(volume=images.volumes.get(), action="clone",
                                    params={"name": "c.qcow2", "format": "qcow2"}, user=admin_user)  # fmt: skip
    assert not Job.objects.exists()


def test_a_volume_vms_use_is_deleted_only_by_an_administrator_with_force(images, run, make_user):
    volume = images.volumes.get()
    with pytest.raises(ServiceError, match="VMs use it: data-1"):
        run(services.volume_job_request, volume=volume, action="delete")
    # a host admin who is not an administrator may not force it
    hank = make_user("hank")
    assign_perm("hosts.manage_host", hank, images.host)
    with pytest.raises(Forbidden, match="Only administrators"):
        services.volume_job_request(volume=volume, action="delete", params={"force": True}, user=hank)
    job = run(services.volume_job_request, volume=volume, action="delete", params={"force": True})
    assert job.status == "succeeded" and not images.volumes.exists()


def test_define_build_start_a_dir_pool_then_stop_undefine(storage_host, run):
    params = {"type": "dir", "target_path": "/srv/pools/fast", "build": True}
    job = run(services.pool_define_request, host=storage_host, name="fast", params=params)
    assert job.status == "succeeded", job.error
    assert job.message == "pool fast defined, built, started, set to start with the host"
    pool = StoragePool.objects.get(host=storage_host, name="fast")
    assert (pool.state, pool.autostart, pool.target_path) == ("active", True, "/srv/pools/fast")
    assert run(services.pool_job_request, pool=pool, action="stop").status == "succeeded"
    pool.refresh_from_db()
    assert pool.state == "inactive"
    assert run(services.pool_job_request, pool=pool, action="undefine").status == "succeeded"
    assert not StoragePool.objects.filter(pk=pool.pk).exists()


@pytest.mark.parametrize(
    ("name", "params", "says"),
    [
        ("images", {"type": "dir", "target_path": "/x"}, "already has a pool named images"),
        ("p", {"type": "dir", "target_path": "relative/dir"}, "Give an absolute path"),
        ("p", {"type": "dir", "target_path": "/etc"}, "/etc is a system directory"),
        ("p", {"type": "netfs", "target_path": "/mnt/p", "source_host": "bad host!"}, "server's host name"),
        ("p", {"type": "fs", "target_path": "/mnt/p", "source_device": "sdb"}, "block device"),
        ("p", {"type": "logical", "source_name": "vg0", "build": True}, "give its device"),
        ("p", {"type": "dir", "target_path": "/x", "source_host": "nfs1"}, "A dir pool takes no source host"),
        ("p", {"type": "zfs"}, '"zfs" is not a valid choice'),
    ],
)
def test_bad_pool_definitions_are_refused_with_what_to_fix(storage_host, admin_user, name, params, says):
    with pytest.raises(ServiceError) as exc:
        services.pool_define_request(host=storage_host, name=name, params=params, user=admin_user)
    assert says in exc.value.message
    assert not Job.objects.exists()


def test_a_failed_define_undoes_what_it_made(storage_host, run, monkeypatch):
    from virt import OperationFailed

    def refuse(conn, name):
        raise OperationFailed("cannot start storage pool: directory does not exist")

    monkeypatch.setattr("virt.storage.pool_start", refuse)
    job = run(
        services.pool_define_request, host=storage_host, name="broken", params={"type": "dir", "target_path": "/srv/b"}
    )
    assert job.status == "failed" and "directory does not exist" in job.error
    assert "undefined the pool it had defined" in job.error
    assert not StoragePool.objects.filter(name="broken").exists()


def test_pool_state_rules(images, admin_user):
    with pytest.raises(ServiceError, match="it is running already"):
        services.pool_job_request(pool=images, action="start", user=admin_user)
    with pytest.raises(ServiceError, match="stop the pool first"):
        services.pool_job_request(pool=images, action="delete", user=admin_user)
    with pytest.raises(ServiceError, match="Unknown pool action 'explode'"):
        services.pool_job_request(pool=images, action="explode", user=admin_user)


def test_storage_rights_are_the_hosts(images, make_user, client):
    viewer, operator = make_user("vic", "viewer"), make_user("olga", "operator")
    with pytest.raises(Forbidden):
        services.volume_create_request(pool=images, name="x", params={"capacity": "1G"}, user=operator)
    client.force_login(viewer)
    assert client.get(f"/storage/pools/{images.pk}/").status_code == 200
    assert client.post(f"/storage/pools/{images.pk}/actions/refresh/").status_code == 403
    stranger = make_user("sam")
    client.force_login(stranger)
    assert client.get(f"/storage/pools/{images.pk}/").status_code == 403
    assert client.get("/api/pools/").json()["count"] == 0
    assign_perm("hosts.view_host", stranger, images.host)
    assert client.get("/api/pools/").json()["count"] == 1


def test_pages_show_pools_and_the_new_pool_form_its_errors(admin_client, storage_host, images):
    listed = admin_client.get("/storage/").content.decode()
    assert "images" in listed and "storage" in listed and "100 GiB" in listed
    host_page = admin_client.get(f"/hosts/{storage_host.pk}/").content.decode()
    assert "Storage pools" in host_page and f"/storage/pools/{images.pk}/" in host_page
    answer = admin_client.post(f"/storage/hosts/{storage_host.pk}/pools/new/",
                               {"host": storage_host.pk, "name": "p", "type": "dir", "target_path": "nowhere"})  # fmt: skip
    assert answer.status_code == 200 and "Give an absolute path" in answer.content.decode()
    assert admin_client.get("/storage/?state=nonsense&host=abc").status_code == 200  # bad filters are ignored


def test_the_api_lists_and_operates(admin_client, images, on_commit):
    pools = admin_client.get("/api/pools/?type=dir").json()
    assert pools["count"] == 1 and pools["results"][0]["volume_count"] == 1
    volume = admin_client.get(f"/api/volumes/?pool={images.pk}").json()["results"][0]
    detail = admin_client.get(f"/api/volumes/{volume['id']}/").json()
    assert detail["used_by"] == [{"uuid": DATA1, "name": "data-1"}]
    with on_commit():
        answer = admin_client.post("/api/volumes/", {"pool": images.pk, "name": "api.qcow2", "params": {"capacity": "1G"}},
                                   content_type="application/json")  # fmt: skip
    assert answer.status_code == 202 and answer.json()["kind"] == "volume.create"
    bad = admin_client.post(f"/api/pools/{images.pk}/actions/", {"action": "start"}, content_type="application/json")
    assert bad.status_code == 400 and "running already" in bad.json()["error"]


def test_pool_events_reach_the_pages(images, on_commit, monkeypatch):
    sent = []
    monkeypatch.setattr("core.realtime._pusher.send", lambda groups, message: sent.append(message["event"]))
    from hosts.connections import host_connection
    from storage.inventory import pool_reread

    host_connection(images.host).raw.storagePoolLookupByName("images").createXML(
        "<volume><name>behind.raw</name><capacity>1048576</capacity></volume>", 0
    )  # someone else made a volume
    with on_commit():
        pool_reread(host=images.host, name="images", conn=host_connection(images.host))
    by_type = {e["type"]: e for e in sent}
    assert sorted(by_type) == ["pool.updated", "volume.updated"]
    assert by_type["volume.updated"]["volume"]["name"] == "behind.raw"
    assert by_type["pool.updated"]["pool"]["volume_count"] == 2
