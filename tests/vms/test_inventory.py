"""host_sync / vm_reconcile: rows follow libvirt, keyed by UUID across hosts."""

import pytest
from django.utils import timezone

from hosts.connections import host_connection
from hosts.services import host_sync
from tests.helpers import domain_xml
from vms.models import VM

WEB1 = "11111111-1111-4111-8111-111111111101"


@pytest.fixture
def pushes(monkeypatch):
    """Events handed to the channel layer (the layer itself is tested in tests/dashboard)."""
    sent = []
    monkeypatch.setattr(
        "core.realtime.push_now", lambda groups, event: sent.append((groups, event.model_dump(mode="json")))
    )
    return sent


def test_rows_carry_what_libvirt_reports(host_a):
    web = VM.objects.get(name="web-1")
    assert str(web.uuid) == WEB1 and web.host == host_a
    assert (web.state, web.vcpus, web.max_vcpus, web.memory_kib) == ("running", 1, 2, 512 * 1024)
    assert (web.graphics_type, web.graphics_listen, web.graphics_port) == ("vnc", "127.0.0.1", 5901)
    assert "<name>web-1</name>" in web.xml
    db = VM.objects.get(name="db-1")
    assert db.state == "shutoff" and db.graphics_password and "s3cret" not in db.xml
    assert VM.objects.get(name="batch-1").state == "paused"


def test_a_change_behind_our_back_shows_after_a_sync_and_is_pushed(host_a, raw_libvirt, pushes, on_commit):
    before = VM.objects.get(name="web-1")
    raw_libvirt(host_a).lookupByName("web-1").suspend()
    with on_commit():
        result = host_sync(host=host_a)
    after = VM.objects.get(name="web-1")
    assert result.updated == 1 and after.state == "paused" and after.version == before.version + 1
    events = [e for _, e in pushes if e["type"] == "vm.updated"]
    assert [e["vm"]["name"] for e in events] == ["web-1"]
    groups = next(g for g, e in pushes if e["type"] == "vm.updated")
    assert set(groups) == {"fleet", f"host.{host_a.pk}", f"vm.{WEB1}"}


def test_an_unchanged_host_resyncs_without_writes_or_pushes(host_a, pushes, on_commit, django_assert_max_num_queries):
    # a bounded number of reads whatever the VM count: domains 4, storage 4 (caps, pools, volumes,
    # partial volumes left by failed jobs), networks 4 (networks, their read time, running VMs with
    # NICs, guest addresses), capabilities 1 (compared, not rewritten), snapshots 1 (every VM's rows at
    # once), the host row and its sync time
    with on_commit(), django_assert_max_num_queries(19):
        result = host_sync(host=host_a)
    assert result.changed == 0
    assert not [e for _, e in pushes if e["type"] == "vm.updated"]


def test_an_undefined_vm_is_marked_gone_not_deleted(host_a, raw_libvirt):
    dom = raw_libvirt(host_a).lookupByName("db-1")
    dom.undefine()
    result = host_sync(host=host_a)
    db = VM.objects.get(name="db-1")
    assert result.gone == 1 and db.gone_at is not None and db.host == host_a
    assert not VM.objects.present().filter(name="db-1").exists()


def test_a_gone_vm_that_comes_back_is_present_again(host_a, raw_libvirt):
    conn = raw_libvirt(host_a)
    xml = conn.lookupByName("db-1").XMLDesc(0)
    conn.lookupByName("db-1").undefine()
    host_sync(host=host_a)
    conn.defineXML(xml)
    host_sync(host=host_a)
    assert VM.objects.get(name="db-1").gone_at is None


def test_new_domains_appear(host_a, raw_libvirt):
    raw_libvirt(host_a).defineXML(domain_xml("new-1", "33333333-3333-4333-8333-333333333333"))
    result = host_sync(host=host_a)
    assert result.created == 1 and VM.objects.get(name="new-1").state == "shutoff"


def test_a_vm_running_on_another_host_moves_there(host_a, host_b, raw_libvirt):
    """The VM keeps its row (id, history) and changes host; it is never shown twice."""
    a, b = raw_libvirt(host_a), raw_libvirt(host_b)
    xml = a.lookupByName("web-1").XMLDesc(0)
    row_id = VM.objects.get(uuid=WEB1).pk
    a.lookupByName("web-1").destroy()  # stopped on A (still defined there) ...
    b.createXML(xml, 0)  # ... and running on B
    host_sync(host=host_b)
    vm = VM.objects.get(uuid=WEB1)
    assert vm.pk == row_id and vm.host == host_b and vm.state == "running"
    assert VM.objects.filter(uuid=WEB1).count() == 1
    host_sync(host=host_a)  # A still has a shut-off definition: it must not pull the VM back
    vm.refresh_from_db()
    assert vm.host == host_b and vm.also_on == host_a


def test_a_defined_copy_elsewhere_does_not_steal_a_running_vm(host_a, host_b, raw_libvirt):
    a, b = raw_libvirt(host_a), raw_libvirt(host_b)
    b.defineXML(a.lookupByName("web-1").XMLDesc(0))  # shut-off copy on B
    host_sync(host=host_b)
    vm = VM.objects.get(uuid=WEB1)
    assert vm.host == host_a and vm.state == "running" and vm.also_on == host_b


def test_when_the_current_host_loses_it_the_vm_moves_to_the_other_copy(host_a, host_b, raw_libvirt):
    """Offline migration: defined on B first, then undefined on A."""
    a, b = raw_libvirt(host_a), raw_libvirt(host_b)
    b.defineXML(a.lookupByName("db-1").XMLDesc(0))
    host_sync(host=host_b)
    assert VM.objects.get(name="db-1").host == host_a
    a.lookupByName("db-1").undefine()
    result = host_sync(host=host_a)
    vm = VM.objects.get(name="db-1")
    assert result.moved == 1 and vm.host == host_b and vm.gone_at is None and vm.also_on is None


def test_a_gone_vm_that_reappears_elsewhere_moves_there(host_a, host_b, raw_libvirt):
    a, b = raw_libvirt(host_a), raw_libvirt(host_b)
    xml = a.lookupByName("db-1").XMLDesc(0)
    a.lookupByName("db-1").undefine()
    host_sync(host=host_a)
    b.defineXML(xml)
    host_sync(host=host_b)
    vm = VM.objects.get(name="db-1")
    assert vm.host == host_b and vm.gone_at is None


def test_a_state_only_change_updates_just_the_state_and_is_pushed(host_a, host_b, raw_libvirt, pushes, on_commit):
    from hosts.connections import host_connection
    from vms.inventory import vm_apply_state

    before = VM.objects.get(uuid=WEB1)
    raw_libvirt(host_a).lookupByUUIDString(WEB1).suspend()
    with on_commit():
        assert vm_apply_state(
            host=host_a, uuid=WEB1, state=host_connection(host_a).power_state(WEB1), read_at=timezone.now()
        )
    after = VM.objects.get(uuid=WEB1)
    assert (after.state, after.version, after.xml) == ("paused", before.version + 1, before.xml)
    assert [e["vm"]["state"] for _, e in pushes if e["type"] == "vm.updated"] == ["paused"]
    # its host shows one VM less running
    assert [e["host"]["running_count"] for _, e in pushes if e["type"] == "host.updated"] == [0]
    pushed = len(pushes)
    with on_commit():  # the same state again: nothing to write or push
        assert vm_apply_state(
            host=host_a, uuid=WEB1, state=host_connection(host_a).power_state(WEB1), read_at=timezone.now()
        )
    assert VM.objects.get(uuid=WEB1).version == after.version and len(pushes) == pushed
    # not a VM of that host: the caller must re-read it fully
    assert not vm_apply_state(
        host=host_b, uuid=WEB1, state=host_connection(host_a).power_state(WEB1), read_at=timezone.now()
    )


# --- an older answer never overwrites a newer one, whichever is written last ---------------------
def test_a_listing_read_before_an_event_does_not_undo_what_the_event_found(host_a, raw_libvirt):
    """A resync lists the host, then a VM is suspended and another undefined; the events' re-reads
    are written first, the resync's older listing last. The rows keep what the re-reads found."""
    from vms.inventory import vm_apply_state, vm_reconcile

    conn = host_connection(host_a)
    listed_at = timezone.now()
    listing = conn.list_domains()  # web-1 running, db-1 defined
    raw_libvirt(host_a).lookupByUUIDString(WEB1).suspend()
    raw_libvirt(host_a).lookupByName("db-1").undefine()
    db_uuid = str(VM.objects.get(name="db-1").uuid)
    assert vm_apply_state(host=host_a, uuid=WEB1, state=conn.power_state(WEB1), read_at=timezone.now())
    vm_reconcile(host=host_a, infos=[], scope={db_uuid}, read_at=timezone.now())
    web, db = VM.objects.get(uuid=WEB1), VM.objects.get(name="db-1")
    assert web.state == "paused" and db.gone_at is not None

    result = vm_reconcile(host=host_a, infos=listing, read_at=listed_at)
    assert result.changed == 0
    assert VM.objects.get(uuid=WEB1).state == "paused" and VM.objects.get(name="db-1").gone_at is not None
    assert VM.objects.get(uuid=WEB1).version == web.version
    host_sync(host=host_a)  # a listing read now agrees with the rows
    assert VM.objects.get(uuid=WEB1).state == "paused" and VM.objects.get(name="db-1").gone_at is not None


def test_a_re_read_older_than_the_row_is_ignored(host_a, raw_libvirt):
    from vms.inventory import vm_apply_state, vm_reconcile

    conn = host_connection(host_a)
    before = timezone.now()
    stale_state, stale_info = conn.power_state(WEB1), conn.domain_info(WEB1)  # running
    raw_libvirt(host_a).lookupByUUIDString(WEB1).suspend()
    host_sync(host=host_a)
    assert VM.objects.get(uuid=WEB1).state == "paused"
    assert vm_apply_state(host=host_a, uuid=WEB1, state=stale_state, read_at=before)  # handled: nothing to do
    vm_reconcile(host=host_a, infos=[stale_info], scope={WEB1}, read_at=before)
    assert VM.objects.get(uuid=WEB1).state == "paused"
    vm_reconcile(host=host_a, infos=[conn.domain_info(WEB1)], scope={WEB1}, read_at=timezone.now())
    raw_libvirt(host_a).lookupByUUIDString(WEB1).resume()
    assert vm_apply_state(host=host_a, uuid=WEB1, state=conn.power_state(WEB1), read_at=timezone.now())
    assert VM.objects.get(uuid=WEB1).state == "running"
