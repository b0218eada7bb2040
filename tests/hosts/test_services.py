import socket

import pytest

from core.errors import ServiceError
from hosts.models import Host
from hosts.services import host_add, host_mark_unreachable, host_remove, host_sync, host_update
from tests.helpers import driver_uri
from vms.models import VM


def test_adding_a_host_records_node_facts_and_its_vms(host_a):
    assert host_a.state == "connected"
    assert host_a.cpus == 4 and host_a.memory_bytes == 8 * 1024**3
    assert host_a.hypervisor_type == "TEST" and host_a.libvirt_version
    assert host_a.last_seen is not None and host_a.last_sync is not None
    names = sorted(VM.objects.filter(host=host_a).values_list("name", flat=True))
    assert names == ["batch-1", "db-1", "web-1"]


def test_the_same_uri_twice_is_refused(host_a):
    with pytest.raises(ServiceError) as exc:
        host_add(name="again", uri=host_a.uri)
    assert exc.value.field == "uri" and "already registered as host 'host-a'" in exc.value.message
    assert Host.objects.count() == 1


def test_duplicate_name_is_refused_case_insensitively(host_a):
    with pytest.raises(ServiceError) as exc:
        host_add(name="HOST-A", uri=driver_uri("host-b.xml"))
    assert exc.value.field == "name"


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["", "   ", "-leading-dash", "semi;colon", "x" * 101, "<script>"])
def test_bad_names_are_refused(name):
    with pytest.raises(ServiceError) as exc:
        host_add(name=name, uri=driver_uri("host-a.xml"))
    assert exc.value.field == "name"
    assert not Host.objects.exists()


@pytest.mark.django_db
def test_malformed_uri_is_refused_with_the_reason():
    with pytest.raises(ServiceError) as exc:
        host_add(name="h", uri="qemu+ftp://host/system")
    assert exc.value.field == "uri" and "unknown transport 'ftp'" in exc.value.message
    assert not Host.objects.exists()


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.django_db
def test_unreachable_host_is_refused_with_libvirts_reason():
    port = _refused_port()
    with pytest.raises(ServiceError) as exc:
        host_add(name="dead", uri=f"qemu+tcp://127.0.0.1:{port}/system")
    assert "Could not connect" in exc.value.message and "Connection refused" in exc.value.message
    assert not Host.objects.exists()


@pytest.mark.django_db
def test_unreachable_host_can_be_added_as_offline_on_request():
    port = _refused_port()
    host = host_add(name="later", uri=f"qemu+tcp://127.0.0.1:{port}/system", allow_offline=True)
    assert host.state == "unreachable" and "Connection refused" in host.last_error


@pytest.mark.django_db
def test_missing_ssh_key_file_is_refused(tmp_path):
    with pytest.raises(ServiceError) as exc:
        host_add(name="ssh", uri="qemu+ssh://root@127.0.0.1/system", ssh_key_path=str(tmp_path / "nope"))
    assert exc.value.field == "ssh_key_path" and "No file at" in exc.value.message


def test_editing_the_uri_reconnects_and_resyncs(host_a, on_commit):
    with on_commit():
        host_update(host=host_a, name="renamed", uri=driver_uri("host-b.xml"))
    host_a.refresh_from_db()
    assert host_a.name == "renamed" and host_a.cpus == 8
    present = VM.objects.present().filter(host=host_a).values_list("name", flat=True)
    assert list(present) == ["cache-1"]  # the old host's VMs are gone, the new host's are there


def test_editing_keeps_the_password_unless_cleared(host_a):
    Host.objects.filter(pk=host_a.pk).update(sasl_password="pw")
    host_a.refresh_from_db()
    host_update(host=host_a, name="host-a", uri=host_a.uri, sasl_password=None)
    assert Host.objects.get(pk=host_a.pk).sasl_password == "pw"


def test_removing_a_host_forgets_its_vms_but_not_the_host_itself(host_a, host_b):
    host_remove(host=host_a)
    assert not Host.objects.filter(pk=host_a.pk).exists()
    assert not VM.objects.filter(name="web-1").exists()
    assert VM.objects.filter(name="cache-1").exists()


def test_unreachable_then_sync_reconnects(host_a):
    host_mark_unreachable(host=host_a, error="Cannot recv data")
    host_a.refresh_from_db()
    assert host_a.status == "unreachable"
    result = host_sync(host=host_a)
    host_a.refresh_from_db()
    assert result.ok and host_a.status == "connected" and host_a.last_error == ""


def test_sync_of_an_unreachable_host_marks_it_and_keeps_its_vms(host_a):
    port = _refused_port()
    Host.objects.filter(pk=host_a.pk).update(uri=f"qemu+tcp://127.0.0.1:{port}/system")
    host_a.refresh_from_db()
    result = host_sync(host=host_a)
    host_a.refresh_from_db()
    assert not result.ok and host_a.state == "unreachable" and "Connection refused" in host_a.last_error
    assert VM.objects.present().filter(host=host_a).count() == 3  # nothing is "gone" just because we lost contact


def test_removing_a_host_with_an_active_job_is_refused(host_a, admin_user):
    from core.errors import Conflict
    from vms.services import vm_job_request

    vm_job_request(vm=VM.objects.get(name="web-1"), action="suspend", user=admin_user)  # stays queued
    with pytest.raises(Conflict, match="1 job\\(s\\) in progress"):
        host_remove(host=host_a)
    assert Host.objects.filter(pk=host_a.pk).exists()


def test_host_ensure_is_idempotent_and_keeps_the_migration_address(db):
    from hosts.services import host_ensure

    host, created = host_ensure(name="lab-x", uri=driver_uri("host-b.xml"), migration_address="127.0.0.1")
    assert created and host.migration_address == "127.0.0.1"
    again, created = host_ensure(name="lab-x", uri=driver_uri("host-b.xml"), migration_address="127.0.0.1")
    assert not created and again.pk == host.pk
    host_ensure(name="lab-x", uri=driver_uri("host-b.xml"), migration_address="10.0.0.7")
    assert Host.objects.get(pk=host.pk).migration_address == "10.0.0.7" and Host.objects.count() == 1
