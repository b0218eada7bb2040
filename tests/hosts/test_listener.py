"""The listener against the libvirt test driver (in-process) and the real Redis."""

import threading
import time
import uuid

import pytest
import redis
from django.conf import settings

from hosts.listener import Listener, ListenerConfig
from hosts.models import Host
from tests.helpers import DATA
from vms.models import VM

pytestmark = pytest.mark.django_db(transaction=True)
WEB1 = "11111111-1111-4111-8111-111111111101"


def wait_for(predicate, timeout=5.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


@pytest.fixture
def redis_client():
    return redis.Redis.from_url(settings.REDIS_URL)


@pytest.fixture
def prefix():
    """Each test's listeners lease in their own namespace."""
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def start_listener(redis_client, prefix):
    running = []

    def start(name="l1", **config):
        cfg = ListenerConfig(**{"tick": 0.2, "lease_ttl": 1.5, "lease_prefix": prefix, **config})
        listener = Listener(config=cfg, client=redis_client, owner=name)
        thread = threading.Thread(target=listener.run, daemon=True)
        thread.start()
        running.append((listener, thread))
        return listener

    yield start
    for listener, thread in running:
        listener.stop()
        thread.join(5)
    _end_other_sessions()


def _end_other_sessions() -> None:
    """On PostgreSQL, end the sessions the listeners' threads opened: one still inside a query when
    the test's tables are flushed deadlocks the flush (SQLite has no sessions to end)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def watched(listener, host):
    w = listener.watchers.get(host.pk)
    return w is not None and w.conn is not None


def test_listener_connects_resyncs_and_follows_events(host_a, start_listener, raw_libvirt):
    Host.objects.filter(pk=host_a.pk).update(state="pending")
    listener = start_listener()
    assert wait_for(lambda: watched(listener, host_a))
    assert wait_for(lambda: Host.objects.get(pk=host_a.pk).state == "connected")
    raw_libvirt(host_a).lookupByUUIDString(WEB1).suspend()  # the listener's own connection (same process)
    assert wait_for(lambda: VM.objects.get(uuid=WEB1).state == "paused", timeout=10)
    raw_libvirt(host_a).lookupByUUIDString(WEB1).resume()
    assert wait_for(lambda: VM.objects.get(uuid=WEB1).state == "running", timeout=10)


def test_undefined_domain_is_marked_gone_by_event(host_a, start_listener, raw_libvirt):
    listener = start_listener()
    assert wait_for(lambda: watched(listener, host_a))
    raw_libvirt(host_a).lookupByName("db-1").undefine()
    assert wait_for(lambda: VM.objects.get(name="db-1").gone_at is not None, timeout=10)


def test_events_during_the_resync_after_connecting_are_not_undone_by_it(
    host_a, start_listener, raw_libvirt, monkeypatch
):
    """The resync lists the host; a domain is undefined and its event re-read is written before the
    resync writes its (older) listing. The VM stays gone. (This raced in CI before rows knew when
    their answer was read.)"""
    import vms.inventory

    real = vms.inventory.vm_reconcile
    raced, resynced = threading.Event(), threading.Event()

    def reconcile(*, host, infos, read_at, scope=None, **kw):
        if scope is not None or raced.is_set():
            return real(host=host, infos=infos, read_at=read_at, scope=scope, **kw)
        raced.set()
        assert "db-1" in [i.name for i in infos]  # the resync's listing, read before the undefine
        raw_libvirt(host).lookupByName("db-1").undefine()
        wait_for(lambda: VM.objects.get(name="db-1").gone_at is not None, timeout=10)
        try:
            return real(host=host, infos=infos, read_at=read_at, scope=scope, **kw)
        finally:
            resynced.set()

    monkeypatch.setattr(vms.inventory, "vm_reconcile", reconcile)
    listener = start_listener()
    assert resynced.wait(15)
    assert listener.watchers[host_a.pk].events >= 1  # the event's re-read ran first
    assert VM.objects.get(name="db-1").gone_at is not None


def test_a_burst_of_events_for_one_vm_is_coalesced():
    """While a VM is being re-read, any number of new events for it make exactly one more re-read,
    a full one if any of them needed it."""
    from hosts.inventory import Hint
    from hosts.listener import Shard

    release, calls = threading.Event(), []

    def handler(host_id, hint):
        calls.append((host_id, hint.key, hint.full))
        release.wait(5)

    shard = Shard(0, handler)
    shard.start()
    shard.submit(1, Hint("domains", WEB1, full=False))
    assert wait_for(lambda: len(calls) == 1)  # the first re-read is running and blocked
    for i in range(50):
        shard.submit(1, Hint("domains", WEB1, full=(i == 17)))
    shard.submit(2, Hint("domains", WEB1, full=False))  # another host's copy is its own key
    release.set()
    assert wait_for(lambda: len(calls) == 3)
    time.sleep(0.2)
    shard.stop()
    assert calls == [(1, WEB1, False), (1, WEB1, True), (2, WEB1, False)]


@pytest.fixture
def four_hosts(tmp_path):
    from hosts.services import host_add

    empty = (DATA / "host-b.xml").read_text().split("<domain")[0] + "</node>"
    hosts = []
    for i in range(4):
        node = tmp_path / f"node{i}.xml"
        node.write_text(empty)
        hosts.append(host_add(name=f"h{i}", uri=f"test:///{node}"))
    return hosts


def test_two_listeners_split_the_hosts(four_hosts, start_listener):
    one, two = start_listener("one"), start_listener("two")
    assert wait_for(lambda: len(one.watchers) == 2 and len(two.watchers) == 2, timeout=8)
    assert not set(one.watchers) & set(two.watchers)  # never two listeners on one host


def test_hosts_of_a_dead_listener_are_taken_over(four_hosts, start_listener, redis_client, prefix):
    config = ListenerConfig(tick=0.2, lease_ttl=1.5, lease_prefix=prefix)
    doomed = Listener(config=config, client=redis_client, owner="doomed")
    doomed.tick()  # takes every host, then "dies": never renews its leases
    assert len(doomed.watchers) == 4
    survivor = start_listener("survivor")
    assert wait_for(lambda: len(survivor.watchers) == 4, timeout=10)
    for w in doomed.watchers.values():
        if w.conn:
            w.conn.close()


def test_a_removed_host_is_dropped(host_a, start_listener):
    from hosts.services import host_remove

    listener = start_listener()
    assert wait_for(lambda: watched(listener, host_a))
    host_id = host_a.pk
    host_remove(host=Host.objects.get(pk=host_id))
    assert wait_for(lambda: host_id not in listener.watchers, timeout=10)
    assert not Host.objects.filter(pk=host_id).exists()
