"""core.access: roles, object permissions on hosts and VMs, and what each user sees — in
answers, in querysets and on the live socket (with the real Redis channel layer)."""

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from guardian.shortcuts import assign_perm, remove_perm

from core import access
from core.errors import Forbidden
from core.realtime import push_now
from hosts.events import HostRemoved, HostUpdated, host_payload
from hosts.models import Host
from jobs.events import JobUpdated, job_payload
from jobs.models import Job
from migration.events import MigrationProgress, MigrationStats
from vms.events import VMUpdated, vm_payload
from vms.models import VM

WEB1 = "11111111-1111-4111-8111-111111111101"  # host-a
DB1 = "11111111-1111-4111-8111-111111111102"  # host-a
CACHE1 = "22222222-2222-4222-8222-222222222201"  # host-b


@pytest.fixture
def fleet(host_a, host_b):
    return {"a": host_a, "b": host_b, "web1": VM.objects.get(uuid=WEB1), "cache1": VM.objects.get(uuid=CACHE1)}


def test_roles_give_their_rights_for_the_whole_fleet(fleet, make_user, admin_user):
    viewer, operator, admin = make_user("v", "viewer"), make_user("o", "operator"), make_user("a", "admin")
    web1, host = fleet["web1"], fleet["a"]
    assert access.may(viewer, access.VIEW, web1) and not access.may(viewer, access.OPERATE, web1)
    assert all(access.may(operator, a, web1) for a in (access.OPERATE, access.CONSOLE, access.MIGRATE))
    assert not access.may(operator, access.MANAGE, host) and not access.may(operator, access.MAINTAIN, host)
    assert not access.may(operator, access.MANAGE) and access.may(admin, access.MANAGE)
    assert all(access.may(admin, a, host) for a in (access.MANAGE, access.MAINTAIN, access.VIEW))
    assert access.may(admin, access.ADMINISTER) and not access.may(operator, access.ADMINISTER)
    assert access.may(admin_user, access.MANAGE, host)  # superusers may everything
    for user in (viewer, operator, admin):
        assert access.visibility_for(user).everything


def test_nobody_without_a_role_sees_anything(fleet, make_user):
    from django.contrib.auth.models import AnonymousUser

    nobody = make_user("nobody")
    assert access.visibility_for(nobody) == access.NOTHING
    assert access.visible_vms(nobody, VM.objects.all()).count() == 0
    assert not access.may(AnonymousUser(), access.VIEW, fleet["web1"])
    inactive = make_user("gone", "admin", is_active=False)
    assert not access.may(inactive, access.VIEW, fleet["web1"])


def test_a_permission_on_a_host_covers_its_vms_and_follows_vms_that_move_onto_it(fleet, make_user):
    hank = make_user("hank")
    assign_perm("hosts.operate_vms", hank, fleet["a"])
    seen = access.visibility_for(hank)
    assert seen.host_ids == {fleet["a"].pk} and not seen.everything
    assert set(access.visible_vms(hank, VM.objects.all()).values_list("name", flat=True)) == {
        "web-1",
        "db-1",
        "batch-1",
    }
    assert access.may(hank, access.OPERATE, fleet["web1"])
    assert not access.may(hank, access.CONSOLE, fleet["web1"])  # only what was given
    assert not access.may(hank, access.OPERATE, fleet["cache1"]) and not access.may(hank, access.VIEW, fleet["cache1"])
    # cache-1 migrates onto host-a: it is hank's now, with no new permission
    VM.objects.filter(uuid=CACHE1).update(host=fleet["a"])
    moved = VM.objects.get(uuid=CACHE1)
    assert access.may(hank, access.OPERATE, moved) and access.visibility_for(hank).allows_vm(
        uuid=CACHE1, host_id=fleet["a"].pk
    )


def test_a_permission_on_one_vm_covers_that_vm_only(fleet, make_user):
    vera = make_user("vera")
    assign_perm("vms.console_vm", vera, fleet["web1"])
    assert access.may(vera, access.VIEW, fleet["web1"]) and access.may(vera, access.CONSOLE, fleet["web1"])
    assert not access.may(vera, access.OPERATE, fleet["web1"])
    assert not access.may(vera, access.VIEW, VM.objects.get(uuid=DB1))
    assert not access.may(vera, access.VIEW, fleet["a"])  # not its host
    assert list(access.visible_vms(vera, VM.objects.all()).values_list("name", flat=True)) == ["web-1"]


def test_permissions_given_to_a_group_count_too(fleet, make_user):
    from django.contrib.auth.models import Group

    team = Group.objects.create(name="web team")
    assign_perm("vms.operate_vm", team, fleet["web1"])
    wendy = make_user("wendy")
    wendy.groups.add(team)
    assert access.may(wendy, access.OPERATE, fleet["web1"]) and not access.may(wendy, access.OPERATE, fleet["cache1"])


def test_revoked_rights_end(fleet, make_user):
    hank = make_user("hank")
    assign_perm("hosts.view_host", hank, fleet["a"])
    assert access.may(hank, access.VIEW, fleet["web1"])
    remove_perm("hosts.view_host", hank, fleet["a"])
    access.forget(hank)
    assert not access.may(hank, access.VIEW, fleet["web1"])


def test_jobs_are_seen_and_cancelled_with_the_rights_that_started_them(fleet, make_user):
    web1, cache1 = fleet["web1"], fleet["cache1"]
    job = Job.objects.create(kind="migrate", vm=web1, vm_uuid=web1.uuid, host=fleet["a"], target_host=fleet["b"])
    hank = make_user("hank")
    assign_perm("hosts.view_host", hank, fleet["b"])  # the migration comes to host-b
    assert access.may(hank, access.VIEW, job) and not access.may(hank, access.CANCEL, job)
    assign_perm("vms.migrate_vm", hank, web1)
    access.forget(hank)
    assert access.may(hank, access.CANCEL, job)
    other = Job.objects.create(kind="reboot", vm=cache1, vm_uuid=cache1.uuid, host=fleet["b"])
    assert access.may(hank, access.VIEW, other) and not access.may(hank, access.CANCEL, other)
    maint = Job.objects.create(kind="maintenance", host=fleet["a"])
    assert not access.may(hank, access.VIEW, maint)


def test_require_refuses_saying_what_to_ask_for_and_records_it(fleet, make_user):
    from audit.models import AuditEvent

    viewer = make_user("v", "viewer")
    with pytest.raises(Forbidden) as err:
        access.require(viewer, access.MIGRATE, fleet["web1"], what="vm.migrate")
    assert (
        err.value.message == "You may not migrate VM web-1: ask an administrator for operator rights on it or its host."
    )
    assert err.value.status_code == 403
    event = AuditEvent.objects.get(outcome="refused")
    assert (event.action, event.outcome, event.username, event.vm_name) == ("vm.migrate", "refused", "v", "web-1")
    with pytest.raises(Forbidden) as err:
        access.require(viewer, access.MANAGE)
    assert "add hosts" in err.value.message


def test_removing_a_host_drops_the_permissions_given_on_it_and_its_vms(fleet, make_user, on_commit):
    """The database may give a removed host's id to the next host: a permission must not pass on."""
    from guardian.models import UserObjectPermission

    from hosts.services import host_remove

    hank = make_user("hank")
    assign_perm("hosts.manage_host", hank, fleet["a"])
    assign_perm("vms.operate_vm", hank, fleet["web1"])
    with on_commit():
        host_remove(host=fleet["a"])
    assert not UserObjectPermission.objects.filter(user=hank).exists()


def test_query_counts_do_not_grow_with_the_rows_a_scoped_user_sees(
    fleet, make_user, client, django_assert_max_num_queries
):
    hank = make_user("hank")
    assign_perm("hosts.operate_vms", hank, fleet["a"])
    client.force_login(hank)
    with django_assert_max_num_queries(40):
        assert client.get("/").status_code == 200


# --- the live socket ---------------------------------------------------------------------------------------
def as_user(user):
    from core.consumers import LiveConsumer

    app = LiveConsumer.as_asgi()

    async def wrapped(scope, receive, send):
        return await app({**scope, "user": user}, receive, send)

    return wrapped


async def subscribe(user, topics):
    comm = WebsocketCommunicator(as_user(user), "/ws/live/")
    connected, _ = await comm.connect()
    assert connected
    await comm.receive_json_from()  # hello
    await comm.send_json_to({"action": "subscribe", "topics": topics})
    return comm, await comm.receive_json_from()


def vm_event(vm, host_id):
    """vm.updated for ``vm`` as if it were on ``host_id`` now."""
    return VMUpdated(vm=vm_payload(vm).model_copy(update={"host": host_id, "version": 9}))


def job_event(job_id, vm_uuid, host_id, *, migration=False):
    job = Job(pk=job_id, kind="migrate" if migration else "suspend", vm_uuid=vm_uuid, host_id=host_id)
    if migration:
        stats = MigrationStats(phase="copying memory", percent=10, elapsed_ms=1, data_total=1, data_processed=0,
                               data_remaining=1, memory_bps=0, dirty_rate_bps=0, expected_downtime_ms=0,
                               iteration=1, postcopy=False)  # fmt: skip
        return MigrationProgress(job=job_payload(job), progress=stats)
    return JobUpdated(job=job_payload(job))


@pytest.mark.django_db(transaction=True)
async def test_socket_refuses_topics_and_filters_events_a_scoped_user_may_not_see(host_a, host_b, make_user):
    from audit.models import AuditEvent

    web1 = await VM.objects.aget(uuid=WEB1)
    cache1 = await VM.objects.aget(uuid=CACHE1)
    vera = await database_sync_to_async(make_user)("vera")
    await database_sync_to_async(assign_perm)("vms.view_vm", vera, web1)
    comm, reply = await subscribe(
        vera, ["fleet", "jobs", f"vm:{WEB1}", f"vm:{CACHE1}", f"host:{host_b.pk}", f"host:{host_a.pk}"]
    )
    assert reply["topics"] == ["fleet", "jobs", f"vm:{WEB1}"]
    assert {r["topic"] for r in reply["refused"]} == {f"vm:{CACHE1}", f"host:{host_b.pk}", f"host:{host_a.pk}"}
    assert await AuditEvent.objects.filter(action="live.subscribe", outcome="refused", username="vera").acount() == 3

    push = database_sync_to_async(push_now)
    await push(["fleet"], await database_sync_to_async(vm_event)(cache1, host_b.pk))
    await push(["fleet"], HostUpdated(host=await database_sync_to_async(host_payload)(host_b)))
    await push(["jobs"], job_event(5, CACHE1, host_b.pk))
    await push(["jobs"], job_event(5, CACHE1, host_b.pk, migration=True))
    assert await comm.receive_nothing(timeout=0.5)
    await push(["fleet"], await database_sync_to_async(vm_event)(web1, host_a.pk))
    assert (await comm.receive_json_from(timeout=3))["vm"]["uuid"] == WEB1
    await push(["jobs"], job_event(6, WEB1, host_a.pk))
    assert (await comm.receive_json_from(timeout=3))["job"]["id"] == 6
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_socket_of_a_host_operator_follows_a_vm_that_migrates_onto_the_host(host_a, host_b, make_user):
    cache1 = await VM.objects.aget(uuid=CACHE1)
    hank = await database_sync_to_async(make_user)("hank")
    await database_sync_to_async(assign_perm)("hosts.view_host", hank, host_a)
    comm, _reply = await subscribe(hank, ["fleet"])
    await database_sync_to_async(push_now)(["fleet"], await database_sync_to_async(vm_event)(cache1, host_b.pk))
    assert await comm.receive_nothing(timeout=0.5)
    await database_sync_to_async(push_now)(
        ["fleet"], await database_sync_to_async(vm_event)(cache1, host_a.pk)
    )  # it arrived on host-a
    assert (await comm.receive_json_from(timeout=3))["vm"]["host"] == host_a.pk
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_socket_of_a_user_who_is_disabled_is_closed(host_a, make_user, monkeypatch):
    from core import consumers

    viewer = await database_sync_to_async(make_user)("vic", "viewer")
    comm, _ = await subscribe(viewer, ["fleet"])
    await Host.objects.filter(pk=host_a.pk).aupdate(name="host-a")  # no-op write: the DB answers
    await database_sync_to_async(type(viewer).objects.filter(pk=viewer.pk).update)(is_active=False)
    monkeypatch.setattr(consumers, "REFRESH_SECONDS", 0)
    await database_sync_to_async(push_now)(["fleet"], HostRemoved(host_id=1))
    output = await comm.receive_output(timeout=3)
    assert output == {"type": "websocket.close", "code": 4401}


@pytest.mark.django_db(transaction=True)
async def test_socket_from_another_site_is_refused_before_anything_else():
    """AllowedHostsOriginValidator (dashboard/asgi.py): a page of another site cannot open the socket
    with our cookies; a page of ours gets as far as the sign-in check."""
    from dashboard.asgi import application

    foreign = WebsocketCommunicator(application, "/ws/live/", headers=[(b"origin", b"http://evil.example.com")])
    connected, code = await foreign.connect()
    assert not connected and code != 4401  # refused by the origin check, not by the consumer
    ours = WebsocketCommunicator(application, "/ws/live/", headers=[(b"origin", b"http://127.0.0.1:8000")])
    connected, code = await ours.connect()
    assert not connected and code == 4401  # reached the consumer: not signed in
