"""/ws/live/ with Channels' WebsocketCommunicator against the real Redis channel layer."""

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from core.consumers import LiveConsumer, topic_group
from core.realtime import push_now
from hosts.events import HostRemoved

pytestmark = pytest.mark.django_db(transaction=True)


def with_user(user):
    app = LiveConsumer.as_asgi()

    async def wrapped(scope, receive, send):
        return await app({**scope, "user": user}, receive, send)

    return wrapped


async def connect(user):
    comm = WebsocketCommunicator(with_user(user), "/ws/live/")
    connected, code = await comm.connect()
    return comm, connected, code


@pytest.fixture
def user(django_user_model):
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user(username="op", password="pw-op-12345")
    user.groups.add(Group.objects.get(name="viewer"))
    return user


async def test_anonymous_sockets_are_closed_with_4401():
    _comm, connected, code = await connect(AnonymousUser())
    assert not connected and code == 4401


async def test_subscribed_page_receives_pushed_events(user):
    comm, connected, _ = await connect(user)
    assert connected
    assert (await comm.receive_json_from())["type"] == "hello"
    await comm.send_json_to({"action": "subscribe", "topics": ["fleet", "vm:11111111-1111-4111-8111-111111111101"]})
    reply = await comm.receive_json_from()
    assert reply == {
        "type": "subscribed",
        "topics": ["fleet", "vm:11111111-1111-4111-8111-111111111101"],
        "refused": [],
    }
    await database_sync_to_async(push_now)(["fleet"], HostRemoved(host_id=7))
    assert await comm.receive_json_from(timeout=3) == {"type": "host.removed", "host_id": 7}
    await comm.disconnect()


async def test_bad_messages_get_an_error_not_a_crash(user):
    comm, _, _ = await connect(user)
    await comm.receive_json_from()
    await comm.send_to(text_data="not json at all")
    assert (await comm.receive_json_from(timeout=1))["type"] == "error"
    await comm.send_to(bytes_data=b"\x00\x01")
    assert (await comm.receive_json_from(timeout=1))["type"] == "error"
    await comm.send_json_to([1, 2])
    assert (await comm.receive_json_from(timeout=1))["type"] == "error"
    await comm.disconnect()
    comm2, _, _ = await connect(user)
    await comm2.receive_json_from()
    await comm2.send_json_to({"action": "dance"})
    assert (await comm2.receive_json_from())["type"] == "error"
    await comm2.send_json_to({"action": "subscribe", "topics": ["hosts:all", "vm:zzz", 42, "fleet"]})
    reply = await comm2.receive_json_from()
    assert reply["topics"] == ["fleet"] and len(reply["refused"]) == 3
    await comm2.disconnect()


async def test_unsubscribe_stops_events(user):
    comm, _, _ = await connect(user)
    await comm.receive_json_from()
    await comm.send_json_to({"action": "subscribe", "topics": ["host:3"]})
    await comm.receive_json_from()
    await comm.send_json_to({"action": "unsubscribe", "topics": ["host:3"]})
    assert (await comm.receive_json_from())["type"] == "unsubscribed"
    await database_sync_to_async(push_now)(["host.3"], HostRemoved(host_id=3))
    assert await comm.receive_nothing(timeout=0.5)
    await comm.disconnect()


def test_topic_names_map_to_groups():
    assert topic_group("fleet") == "fleet"
    assert topic_group("host:12") == "host.12"
    assert topic_group("job:5") == "job.5"
    assert topic_group("vm:11111111111141118111111111111101") == "vm.11111111-1111-4111-8111-111111111101"
    for bad in ("", "host:", "host:x", "vm:nothex-but-long-enough-to-pass-len", "fleet2", None, 3):
        assert topic_group(bad) is None


async def test_an_idle_socket_stays_open_and_still_gets_events(user):
    """channels_redis blocks 5 s per receive; the Redis client must not give up reading first."""
    import asyncio

    comm, _, _ = await connect(user)
    await comm.receive_json_from()
    await comm.send_json_to({"action": "subscribe", "topics": ["fleet"]})
    await comm.receive_json_from()
    await asyncio.sleep(6.5)  # idle for longer than one blocking receive
    await database_sync_to_async(push_now)(["fleet"], HostRemoved(host_id=9))
    assert await comm.receive_json_from(timeout=3) == {"type": "host.removed", "host_id": 9}
    await comm.disconnect()
