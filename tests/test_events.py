"""Every event type, the way Zulip tests its events: a page's state is fetched, something happens,
the events it caused are applied to that now stale state as the browser applies them (newest
version wins, older ones are dropped), and the result must equal a fresh fetch of the same data.

The browser's rules are those of static/js/live.js and jobs.js: an object payload replaces the
shown one only when its version is higher; ``host.removed`` drops the host; a migration's progress
carries its job.
"""

from __future__ import annotations

import pytest

from core.realtime import event_types
from hosts.services import host_mark_unreachable, host_remove, host_sync
from jobs import engine
from jobs.models import Job
from vms.models import VM
from vms.services import vm_job_request

WEB1 = "11111111-1111-4111-8111-111111111101"
# "Last seen" is refreshed for every row a listing confirms, without an event (a resync of 10,000
# unchanged VMs would otherwise push 10,000): pages show it as a relative time, not live.
UNPUSHED = {
    "vm": {"last_seen"},
    "host": {"last_seen", "last_sync"},
    "job": set(),
    "pool": set(),
    "volume": set(),
    "network": set(),
}


def shown(kind: str, body: dict) -> dict:
    return {k: v for k, v in body.items() if k not in UNPUSHED[kind]}


@pytest.fixture
def pushed(monkeypatch):
    """Every message that reaches the channel layer, as the live socket receives it."""
    sent: list[tuple[list[str], dict]] = []
    monkeypatch.setattr("core.realtime._pusher.send", lambda groups, message: sent.append((groups, message)))
    return sent


def key_of(event: dict) -> tuple[str, object] | None:
    kind = event["type"]
    if kind == "vm.updated":
        return ("vm", event["vm"]["uuid"])
    if kind == "host.updated":
        return ("host", event["host"]["id"])
    if kind in ("job.updated", "migration.progress"):
        return ("job", event["job"]["id"])
    if kind == "pool.updated":
        return ("pool", event["pool"]["id"])
    if kind == "volume.updated":
        return ("volume", event["volume"]["id"])
    if kind == "network.updated":
        return ("network", event["network"]["id"])
    return None


def apply(state: dict, event: dict) -> None:
    """What a page does with one event."""
    if event["type"] == "host.removed":
        state.pop(("host", event["host_id"]), None)
        return
    if event["type"] == "pool.removed":  # its volumes go with it
        state.pop(("pool", event["pool_id"]), None)
        for key in [k for k, v in state.items() if k[0] == "volume" and v["pool"] == event["pool_id"]]:
            state.pop(key)
        return
    if event["type"] == "volume.removed":
        state.pop(("volume", event["volume_id"]), None)
        return
    if event["type"] == "network.removed":
        state.pop(("network", event["network_id"]), None)
        return
    if event["type"] in ("network.leases", "vm.addresses", "vm.snapshots"):  # the page fetches them again
        return
    key = key_of(event)
    body = shown(key[0], event[key[0]])
    current = state.get(key)
    if current is None or body["version"] > current["version"]:
        state[key] = body


def fetch(client, *, vms=(), hosts=True, jobs=True) -> dict:
    """What the pages show, from the API (the same shapes the events carry)."""
    state: dict = {}
    for vm in client.get("/api/vms/?gone=1&limit=1000").json()["results"]:
        if not vms or vm["uuid"] in vms:
            state[("vm", vm["uuid"])] = shown("vm", vm)
    if hosts:
        for host in client.get("/api/hosts/").json():
            state[("host", host["id"])] = shown("host", host)
    if jobs:
        for job in client.get("/api/jobs/?limit=1000").json()["results"]:
            state[("job", job["id"])] = job
    for pool in client.get("/api/pools/?limit=1000").json()["results"]:
        state[("pool", pool["id"])] = pool
    for volume in client.get("/api/volumes/?limit=1000").json()["results"]:
        state[("volume", volume["id"])] = volume
    for network in client.get("/api/networks/?limit=1000").json()["results"]:
        state[("network", network["id"])] = network
    return state


def events(pushed) -> list[dict]:
    return [message["event"] for _groups, message in pushed]


def check(admin_client, stale: dict, pushed, *, reverse: bool = False) -> list[dict]:
    caught = events(pushed)
    assert caught, "the change pushed no event"
    for event in reversed(caught) if reverse else caught:
        apply(stale, event)
    fresh = fetch(admin_client)
    assert stale == fresh
    return caught


def test_vm_updated_brings_a_stale_fleet_page_to_what_a_fresh_one_shows(
    admin_client, host_a, raw_libvirt, pushed, on_commit
):
    stale = fetch(admin_client)
    raw_libvirt(host_a).lookupByUUIDString(WEB1).suspend()  # behind Virtfleet's back
    raw_libvirt(host_a).lookupByName("db-1").undefine()
    with on_commit():
        host_sync(host=host_a)
    caught = check(admin_client, stale, pushed)
    assert {e["type"] for e in caught} >= {"vm.updated", "host.updated"}


def test_host_updated_for_an_unreachable_host(admin_client, host_a, pushed, on_commit):
    stale = fetch(admin_client)
    with on_commit():
        host_mark_unreachable(host=host_a, error="Cannot recv data: Connection reset by peer")
    assert [e["type"] for e in check(admin_client, stale, pushed)] == ["host.updated"]


def test_host_removed(admin_client, host_a, host_b, pushed, on_commit):
    stale = fetch(admin_client, jobs=False)
    with on_commit():
        host_remove(host=host_b)
    caught = events(pushed)
    for event in caught:
        apply(stale, event)
    fresh = fetch(admin_client, jobs=False)
    # the removed host's VM rows are gone with it: a page drops them when it refetches its table
    assert {k: v for k, v in stale.items() if k[0] == "host"} == {k: v for k, v in fresh.items() if k[0] == "host"}
    assert "host.removed" in {e["type"] for e in caught}


def test_job_updated_follows_a_job_from_request_to_end(admin_client, admin_user, host_a, pushed, on_commit):
    stale = fetch(admin_client)
    with on_commit():
        vm_job_request(vm=VM.objects.get(uuid=WEB1), action="suspend", user=admin_user)
    caught = check(admin_client, stale, pushed)
    statuses = [e["job"]["status"] for e in caught if e["type"] == "job.updated"]
    assert statuses[0] == "queued" and statuses[-1] == "succeeded"


def test_job_events_arriving_out_of_order_leave_the_newest(admin_client, admin_user, host_a, pushed, on_commit):
    stale = fetch(admin_client)
    with on_commit():
        vm_job_request(vm=VM.objects.get(uuid=WEB1), action="suspend", user=admin_user)
    check(admin_client, stale, pushed, reverse=True)  # the newest first: every older one is dropped


def test_a_bulk_parent_and_its_children(admin_client, admin_user, host_a, host_b, pushed, on_commit):
    from vms.services import vms_job_request_bulk

    stale = fetch(admin_client)
    with on_commit():
        result = vms_job_request_bulk(vms=list(VM.objects.filter(state="running")), action="suspend", user=admin_user)
    assert result.parent is not None
    check(admin_client, stale, pushed)
    parent = Job.objects.get(pk=result.parent.pk)
    assert parent.status == "succeeded" and parent.progress == 100


def test_migration_progress_carries_its_job(admin_client, admin_user, host_a, host_b, pushed):
    """The test driver cannot migrate: the progress a migration's watcher reports is fed to the
    migrate kind's reporting as the watcher feeds it (virt.migration.MigrationProgress readings)."""
    from migration.services import _report
    from virt.migration import MigrationProgress

    vm = VM.objects.get(uuid=WEB1)
    job = Job.objects.create(kind="migrate", lock_key=f"vm:{WEB1}", vm=vm, vm_uuid=vm.uuid, vm_name=vm.name,
                             host=host_a, host_name=host_a.name, target_host=host_b, status="running")  # fmt: skip
    stale = fetch(admin_client)
    for percent in (10, 55, 90):
        reading = MigrationProgress(phase="copying memory", percent=percent, elapsed_ms=percent * 10,
                                    data_total=100 * 2**20, data_processed=percent * 2**20,
                                    data_remaining=(100 - percent) * 2**20, memory_bps=2**20, dirty_rate_bps=0,
                                    expected_downtime_ms=300, iteration=1, postcopy=False)  # fmt: skip
        _report(job, reading)
    caught = check(admin_client, stale, pushed)
    assert [e["type"] for e in caught] == ["migration.progress"] * 3
    assert caught[-1]["progress"]["percent"] == 90 and caught[-1]["job"]["progress"] == 90


def test_storage_events_follow_pools_and_volumes_changed_behind_virtfleets_back(admin_client, add_host, raw_libvirt,
                                                                               pushed, on_commit):  # fmt: skip
    from storage.inventory import pool_reread

    host = add_host("storage", "host-storage.xml")
    stale = fetch(admin_client)
    conn = raw_libvirt(host)
    images = conn.storagePoolLookupByName("images")
    images.createXML("<volume><name>new.raw</name><capacity>1048576</capacity></volume>", 0)
    images.storageVolLookupByName("data-1.qcow2").delete(0)
    conn.storagePoolDefineXML("<pool type='dir'><name>extra</name><target><path>/srv/extra</path></target></pool>", 0)
    with on_commit():
        host_sync(host=host)
    caught = check(admin_client, stale, pushed)
    assert {"pool.updated", "volume.updated", "volume.removed"} <= {e["type"] for e in caught}
    pushed.clear()
    stale = fetch(admin_client)
    conn.storagePoolLookupByName("extra").undefine()
    with on_commit():
        pool_reread(host=host, name="extra", conn=host_connection_of(host))
    assert [e["type"] for e in check(admin_client, stale, pushed)] == ["pool.removed"]


def test_network_events_follow_networks_changed_behind_virtfleets_back(admin_client, add_host, raw_libvirt, pushed,
                                                                       on_commit):  # fmt: skip
    from networks.inventory import network_reread

    host = add_host("nethost", "host-net.xml")
    stale = fetch(admin_client)
    conn = raw_libvirt(host)
    conn.networkLookupByName("backend").destroy()
    conn.networkDefineXML("<network><name>extra</name><ip address='10.55.0.1' prefix='24'/></network>")
    with on_commit():
        host_sync(host=host)
    caught = check(admin_client, stale, pushed)
    assert {"network.updated"} <= {e["type"] for e in caught}
    pushed.clear()
    stale = fetch(admin_client)
    conn.networkLookupByName("extra").undefine()
    with on_commit():
        network_reread(host=host, name="extra", conn=host_connection_of(host))
    assert [e["type"] for e in check(admin_client, stale, pushed)] == ["network.removed"]


def test_lease_and_address_events_tell_pages_to_fetch_them_again(admin_client, add_host, pushed, on_commit):
    """dnsmasq's leases (the test driver has none: a lab host's are fed here as libvirt lists them)
    and a running guest's ARP addresses (the test driver answers interfaceAddresses)."""
    from networks.inventory import reconcile_leases
    from networks.models import GuestAddress, Network
    from virt.network import Lease

    with on_commit():
        host = add_host("nethost", "host-net.xml")
    assert {e["type"] for e in events(pushed)} >= {"vm.addresses"}
    assert GuestAddress.objects.filter(vm__name="web-net", source="arp").exists()
    pushed.clear()
    default = Network.objects.get(host=host, name="default")
    lease = Lease(mac="52:54:00:aa:00:01", ip="192.168.122.57", prefix=24, family="ipv4", hostname="web-net",
                  expires=2_000_000_000)  # fmt: skip
    with on_commit():
        assert reconcile_leases(default, [lease], timezone_now())
        assert not reconcile_leases(default, [lease], timezone_now())  # the same list again: nothing
    (event,) = events(pushed)
    assert event == {"type": "network.leases", "network_id": default.pk, "host": host.pk, "macs": ["52:54:00:aa:00:01"]}


def timezone_now():
    from django.utils import timezone

    return timezone.now()


def host_connection_of(host):
    from hosts.connections import host_connection

    return host_connection(host)


def test_snapshot_events_tell_the_vm_page_to_fetch_its_snapshots_again(add_host, admin_user, pushed, on_commit):
    """vm.snapshots carries what the list is now; the page fetches the section (tests/snapshots)."""
    from snapshots.services import snapshot_request

    host = add_host("snaphost", "host-snap.xml")
    vm = VM.objects.get(name="app")
    pushed.clear()
    with on_commit():
        snapshot_request(vm=vm, action="create", params={"name": "s1"}, user=admin_user)
    (event,) = [e for e in events(pushed) if e["type"] == "vm.snapshots"]
    assert event == {"type": "vm.snapshots", "vm": str(vm.uuid), "host": host.pk, "count": 1, "current": "s1"}
    groups = next(g for g, m in pushed if m["event"]["type"] == "vm.snapshots")
    assert set(groups) == {f"vm.{vm.uuid}", f"host.{host.pk}"}


def test_every_event_type_is_covered_here():
    covered = {"vm.updated", "host.updated", "host.removed", "job.updated", "migration.progress", "pool.updated",
               "pool.removed", "volume.updated", "volume.removed", "network.updated", "network.removed",
               "network.leases", "vm.addresses", "vm.snapshots"}  # fmt: skip
    assert set(event_types()) == covered, "a new event type needs its test in this file"


def test_every_event_says_who_may_receive_it(admin_client, admin_user, host_a, pushed, on_commit):
    with on_commit():
        vm_job_request(vm=VM.objects.get(uuid=WEB1), action="suspend", user=admin_user)
        host_mark_unreachable(host=host_a, error="gone")
    for _groups, message in pushed:
        audience = message["audience"]
        assert audience["vm"] in (None, WEB1) and host_a.pk in audience["hosts"]


def test_a_cancel_is_an_event_too(admin_client, admin_user, host_a, pushed, on_commit):
    stale = fetch(admin_client)
    with on_commit():  # the worker's task comes after the cancel: it finds the job ended
        job = vm_job_request(vm=VM.objects.get(uuid=WEB1), action="suspend", user=admin_user)
        engine.job_cancel(job=job, user=admin_user)
    caught = check(admin_client, stale, pushed)
    assert caught[-1]["job"]["status"] == "cancelled"
