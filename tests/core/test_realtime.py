"""Every event type is sent to the right groups with its declared shape (core.realtime)."""

import asyncio

import pytest
from channels.layers import get_channel_layer
from pydantic import ValidationError

from core.realtime import event_types, push_now
from hosts.events import HostRemoved
from hosts.services import host_mark_unreachable, host_remove, host_sync


class GroupSpy:
    """A real channel-layer consumer (through Redis) subscribed to some groups."""

    def __init__(self, *groups):
        self.layer = get_channel_layer()
        self.groups = groups
        self.loop = asyncio.new_event_loop()
        self.channel = self.loop.run_until_complete(self.layer.new_channel())
        for g in groups:
            self.loop.run_until_complete(self.layer.group_add(g, self.channel))

    def receive(self, timeout=3.0):
        message = self.loop.run_until_complete(asyncio.wait_for(self.layer.receive(self.channel), timeout))
        assert message["type"] == "push"
        return message["event"]

    def events(self, timeout=0.5):
        found = []
        while True:
            try:
                found.append(self.receive(timeout))
            except TimeoutError:
                return found

    def close(self):
        for g in self.groups:
            self.loop.run_until_complete(self.layer.group_discard(g, self.channel))
        self.loop.close()


@pytest.fixture
def spy():
    spies = []

    def make(*groups):
        s = GroupSpy(*groups)
        spies.append(s)
        return s

    yield make
    for s in spies:
        s.close()


VM_KEYS = {
    "uuid",
    "name",
    "host",
    "host_name",
    "state",
    "state_label",
    "state_reason",
    "vcpus",
    "memory_kib",
    "gone",
    "version",
}
HOST_KEYS = {"id", "name", "uri", "status", "state", "last_error", "vm_count", "running_count", "memory_bytes"}


def test_vm_updated_reaches_fleet_host_and_vm_groups(host_a, raw_libvirt, spy, on_commit):
    uuid = "11111111-1111-4111-8111-111111111101"
    fleet, host, vm = spy("fleet"), spy(f"host.{host_a.pk}"), spy(f"vm.{uuid}")
    raw_libvirt(host_a).lookupByUUIDString(uuid).suspend()
    with on_commit():
        host_sync(host=host_a)
    for s in (fleet, host, vm):
        event = next(e for e in s.events() if e["type"] == "vm.updated")
        assert set(event["vm"]) >= VM_KEYS and event["vm"]["state"] == "paused"
        assert event["vm"]["uuid"] == uuid and "xml" not in event["vm"]


def test_host_updated_is_sent_when_a_host_becomes_unreachable(host_a, spy, on_commit):
    fleet = spy("fleet")
    with on_commit():
        host_mark_unreachable(host=host_a, error="Cannot recv data: Connection reset by peer")
    event = fleet.receive()
    assert event["type"] == "host.updated" and set(event["host"]) >= HOST_KEYS
    assert event["host"]["status"] == "unreachable" and "Connection reset" in event["host"]["last_error"]
    assert "sasl_password" not in event["host"]


def test_host_removed_is_sent(host_a, spy, on_commit):
    fleet, host_id = spy("fleet"), host_a.pk
    with on_commit():
        host_remove(host=host_a)
    assert fleet.receive() == {"type": "host.removed", "host_id": host_id}


def test_a_moved_vm_is_also_announced_to_its_old_host(host_a, host_b, raw_libvirt, spy, on_commit):
    a, b = raw_libvirt(host_a), raw_libvirt(host_b)
    xml = a.lookupByName("web-1").XMLDesc(0)
    a.lookupByName("web-1").destroy()
    b.createXML(xml, 0)
    old = spy(f"host.{host_a.pk}")
    with on_commit():
        host_sync(host=host_b)
    event = next(e for e in old.events() if e["type"] == "vm.updated")
    assert event["vm"]["host"] == host_b.pk


def test_nothing_is_pushed_for_a_rolled_back_change(host_a, spy, django_capture_on_commit_callbacks):
    fleet = spy("fleet")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        host_mark_unreachable(host=host_a, error="x")
    assert len(callbacks) == 1  # queued for commit, not sent
    assert fleet.events(timeout=0.3) == []


def test_only_declared_events_of_the_declared_shape_are_sent():
    with pytest.raises(TypeError):
        push_now(["fleet"], {"type": "vm.exploded"})
    with pytest.raises(ValidationError):
        HostRemoved(host_id="not a number")
    with pytest.raises(ValidationError):
        HostRemoved(host_id=1, extra="field")
    assert {"vm.updated", "host.updated", "host.removed", "job.updated", "migration.progress"} <= set(event_types())


def test_push_survives_a_dead_channel_layer(settings, db, caplog):
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]}}
    }
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    try:
        push_now(["fleet"], HostRemoved(host_id=1))  # logs, does not raise
        assert "could not push" in caplog.text
    finally:
        channel_layers.backends.clear()
