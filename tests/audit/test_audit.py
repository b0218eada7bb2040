"""The audit log: every change and refusal recorded by the services, readable (filtered, paged)
on /audit/ and /api/audit/, and not editable anywhere."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from guardian.shortcuts import assign_perm

from audit.models import AuditEvent
from hosts.models import Host
from tests.helpers import driver_uri

WEB1 = "11111111-1111-4111-8111-111111111101"
CACHE1 = "22222222-2222-4222-8222-222222222201"


def events(**filters):
    return list(AuditEvent.objects.filter(**filters).order_by("at", "pk"))


def test_an_operation_is_recorded_when_asked_and_when_it_ends(admin_client, host_a, on_commit):
    with on_commit():
        response = admin_client.post(
            f"/api/vms/{WEB1}/actions/",
            {"action": "suspend"},
            content_type="application/json",
            REMOTE_ADDR="203.0.113.5",
        )
    assert response.status_code == 202
    asked, finished = events(action="vm.suspend")[0], events(action="job.finished")[0]
    assert (asked.username, asked.ip, asked.vm_name, asked.host_name, asked.outcome) == (
        "root", "203.0.113.5", "web-1", "host-a", "ok",
    )  # fmt: skip
    assert asked.details["job"] == response.json()["id"] and asked.host_ref == host_a.pk
    assert (finished.outcome, finished.username, finished.ip, finished.vm_name) == (
        "ok",
        "root",
        "203.0.113.5",
        "web-1",
    )
    assert finished.details["status"] == "succeeded"


def test_host_changes_are_recorded(admin_client, on_commit):
    with on_commit():
        admin_client.post(
            "/api/hosts/", {"name": "h1", "uri": driver_uri("host-b.xml")}, content_type="application/json"
        )
    host = Host.objects.get(name="h1")
    with on_commit():
        admin_client.patch(f"/api/hosts/{host.pk}/", {"migration_address": "10.0.0.9"}, content_type="application/json")
        admin_client.post(f"/api/hosts/{host.pk}/sync/")
        admin_client.post(f"/api/hosts/{host.pk}/maintenance/", {"action": "leave"}, content_type="application/json")
        admin_client.delete(f"/api/hosts/{host.pk}/")
    actions = [(e.action, e.outcome) for e in events(host_ref=host.pk)]
    assert actions == [
        ("host.add", "ok"),
        ("host.update", "ok"),
        ("host.sync", "ok"),
        ("host.maintenance.leave", "refused"),  # it was not in maintenance
        ("host.remove", "ok"),
    ]
    update = events(action="host.update")[0]
    assert update.details == {"migration_address": {"from": "", "to": "10.0.0.9"}}
    assert events(action="host.remove")[0].host_name == "h1"  # the name outlives the host


def test_refusals_are_recorded_with_who_and_why(client, host_a, make_user):
    client.force_login(make_user("vic", "viewer"))
    client.post(f"/vms/{WEB1}/actions/reboot/", REMOTE_ADDR="198.51.100.7")
    event = events(outcome="refused")[-1]
    assert (event.action, event.username, event.ip, event.vm_name) == ("vm.reboot", "vic", "198.51.100.7", "web-1")
    assert "ask an administrator for operator rights" in event.message


def test_sign_ins_and_failures_are_recorded(client, make_user, on_commit):
    make_user("olga", "operator", password="Right-pw-123")
    with on_commit():
        client.post("/login/", {"username": "olga", "password": "Bad-Guess-9"}, REMOTE_ADDR="192.0.2.44")
        client.post("/login/", {"username": "olga", "password": "Right-pw-123"}, REMOTE_ADDR="192.0.2.44")
        client.post("/logout/", REMOTE_ADDR="192.0.2.44")
    failed = events(action="login.failed")[0]
    assert (failed.outcome, failed.username, failed.ip, failed.target_name) == (
        "refused",
        "anonymous",
        "192.0.2.44",
        "olga",
    )
    assert "Bad-Guess" not in str(failed.details) + failed.message  # never the password tried
    login, logout = events(action="login")[0], events(action="logout")[0]
    assert (login.username, login.ip) == ("olga", "192.0.2.44") and logout.username == "olga"


def test_permission_and_role_changes_are_recorded(db, host_a, make_user, on_commit):
    from django.contrib.auth.models import Group

    olga = make_user("olga")
    with on_commit():
        olga.groups.add(Group.objects.get(name="operator"))
        assign_perm("hosts.manage_host", olga, host_a)
    role = events(action="user.groups.grant")[0]
    assert (role.target_name, role.details) == ("olga", {"groups": ["operator"]})
    perm = events(action="permission.grant")[0]
    assert perm.host_name == "host-a" and perm.details == {"permission": "hosts.manage_host", "holder": "olga"}


@pytest.fixture
def log(host_a, host_b, make_user):
    """A small log: events on web-1 (host-a), cache-1 (host-b), a sign-in of someone else."""
    from vms.models import VM

    web1, cache1 = VM.objects.get(uuid=WEB1), VM.objects.get(uuid=CACHE1)
    now = timezone.now()
    rows = [
        AuditEvent(at=now - dt.timedelta(days=3), username="olga", ip="192.0.2.1", action="vm.reboot", vm_uuid=web1.uuid,
                   vm_name="web-1", host_ref=host_a.pk, host_name="host-a", target_name="web-1"),
        AuditEvent(at=now - dt.timedelta(days=1), username="olga", ip="192.0.2.1", action="vm.start", outcome="refused",
                   vm_uuid=cache1.uuid, vm_name="cache-1", host_ref=host_b.pk, host_name="host-b", target_name="cache-1"),
        AuditEvent(at=now, username="ada", ip="192.0.2.2", action="login"),
    ]  # fmt: skip
    AuditEvent.objects.bulk_create(rows)
    return {"web1": web1, "cache1": cache1}


def test_administrators_read_everything_with_addresses(client, log, make_user):
    client.force_login(make_user("ada", "admin"))
    page = client.get("/audit/").content.decode()
    for word in ("vm.reboot", "vm.start", "login", "192.0.2.1", "cache-1"):
        assert word in page
    api = client.get("/api/audit/").json()
    assert api["count"] >= 3 and any(e["ip"] == "192.0.2.2" for e in api["results"])


def test_others_read_what_happened_to_what_they_may_see_without_addresses(client, log, make_user):
    hank = make_user("hank")
    assign_perm("hosts.view_host", hank, log["web1"].host)
    client.force_login(hank)
    api = client.get("/api/audit/").json()
    assert {e["action"] for e in api["results"]} == {"vm.reboot", "host.add"}  # host-a was added by the fixture
    assert all(e["ip"] is None for e in api["results"])
    page = client.get("/audit/").content.decode()
    assert "vm.reboot" in page and "cache-1" not in page and "192.0.2.1" not in page and ">login<" not in page
    viewer = make_user("vic", "viewer")
    client.force_login(viewer)
    seen = {e["action"] for e in client.get("/api/audit/").json()["results"]}
    assert {"vm.reboot", "vm.start"} <= seen and "login" not in seen  # others' sign-ins are not theirs


@pytest.mark.parametrize(
    ("query", "actions"),
    [
        ("user=olga", {"vm.reboot", "vm.start"}),
        ("action=vm", {"vm.reboot", "vm.start"}),
        ("action=vm.start", {"vm.start"}),
        ("outcome=refused", {"vm.start"}),
        ("vm=" + CACHE1, {"vm.start"}),
        ("q=web-1", {"vm.reboot"}),
    ],
)
def test_filters(client, log, make_user, query, actions):
    client.force_login(make_user("ada", "admin"))
    found = {e["action"] for e in client.get(f"/api/audit/?{query}").json()["results"]} - {
        "user.groups.grant",
        "user.add",
    }
    assert found == actions
    assert client.get(f"/audit/?{query}").status_code == 200


def test_date_and_host_filters(client, log, make_user):
    client.force_login(make_user("ada", "admin"))
    today = timezone.localdate()
    since = (today - dt.timedelta(days=2)).isoformat()
    found = {e["action"] for e in client.get(f"/api/audit/?since={since}&until={today}&user=olga").json()["results"]}
    assert found == {"vm.start"}
    host = log["web1"].host_id
    assert {e["action"] for e in client.get(f"/api/audit/?host={host}&user=olga").json()["results"]} == {"vm.reboot"}


def test_the_page_is_paged_on_the_server(client, db, make_user):
    AuditEvent.objects.bulk_create(AuditEvent(username="bot", action="vm.start") for _ in range(60))
    client.force_login(make_user("ada", "admin"))
    first = client.get("/audit/?user=bot&per_page=25")
    assert first.context["page"].paginator.count == 60 and len(first.context["page"].object_list) == 25
    assert "page=2" in first.content.decode()
    assert len(client.get("/audit/?user=bot&per_page=25&page=3").context["page"].object_list) == 10


def test_the_log_cannot_be_changed_from_the_ui_api_or_admin(client, log, make_user, admin_user):
    event = AuditEvent.objects.first()
    client.force_login(admin_user)  # even a superuser
    assert client.post("/audit/", {"x": 1}).status_code == 405
    for method in ("post", "put", "patch", "delete"):
        assert (
            getattr(client, method)(f"/api/audit/{event.pk}/", {}, content_type="application/json").status_code == 405
        )
    assert client.get("/admin/audit/auditevent/add/").status_code == 403
    assert client.post(f"/admin/audit/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    change = client.post(f"/admin/audit/auditevent/{event.pk}/change/", {"action": "forged"})
    assert change.status_code == 403
    assert AuditEvent.objects.get(pk=event.pk).action == event.action
