"""Bad input on pages and API: malformed URIs, odd names, huge values, unknown ids, the wrong state,
two requests at once. Each gets a clear message and changes nothing; none gets a 500.

Property-based (hypothesis) for the forms and query strings; the API's own generated-input test
is tests/test_api_fuzz.py.
"""

from __future__ import annotations

import os
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hosts.models import Host
from jobs.models import Job

WEB1 = "11111111-1111-4111-8111-111111111101"
# 40 cases per property in CI; VIRTFLEET_FORM_FUZZ_EXAMPLES=500 for a longer exploration by hand
FUZZ = settings(
    max_examples=int(os.environ.get("VIRTFLEET_FORM_FUZZ_EXAMPLES", "40")),
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
nasty_text = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=30),
    st.sampled_from(["", " ", "\x00", "a" * 5000, "../../etc/passwd", "<script>x</script>", "\U0001d54d", "\u00b2", "\u0663", "-1",
                     "99999999999999999999999", "1e400", "NaN", "null", "[]", "{}", "' OR 1=1 --"]),
)  # fmt: skip


def no_server_error(response, label=""):
    assert response.status_code < 500, f"{label}: {response.status_code} {response.content[:300]!r}"
    assert b"Traceback" not in response.content


# --- forms -------------------------------------------------------------------------------------------------
@FUZZ
@given(name=nasty_text, uri=nasty_text, key=nasty_text, user=nasty_text, address=nasty_text, peer=nasty_text)
def test_add_host_form_refuses_bad_input_without_changing_anything(admin_client, name, uri, key, user, address, peer):
    before = Host.objects.count()
    data = {"name": name, "uri": uri, "ssh_key_path": key, "sasl_username": user, "migration_address": address,
            "peer_uri": peer}  # fmt: skip
    if "127.0.0.1" not in uri and "://" in uri and "test:" not in uri:
        data["uri"] = uri.split("://", 1)[0] + "://127.0.0.1:9/system"  # nothing leaves this machine
    response = admin_client.post("/hosts/add/", {k: v.replace("\x00", "") for k, v in data.items()})
    no_server_error(response, repr(data))
    if response.status_code == 200:  # the form again, saying what is wrong
        assert Host.objects.count() == before
        assert b"errorlist" in response.content or b"alert-error" in response.content


@pytest.fixture
def fleet(host_a, host_b):
    return host_a, host_b


@FUZZ
@given(kind=nasty_text, timeout=nasty_text, flag=nasty_text)
def test_vm_actions_with_odd_kinds_and_options_never_fail_badly(admin_client, fleet, kind, timeout, flag):
    path = (
        f"/vms/{WEB1}/actions/{kind}/" if kind and "/" not in kind and "\x00" not in kind else f"/vms/{WEB1}/actions/x/"
    )
    response = admin_client.post(path, {"timeout": timeout.replace("\x00", ""), "force_boot": flag.replace("\x00", "")})
    no_server_error(response, path)


@FUZZ
@given(target=nasty_text, bandwidth=nasty_text, downtime=nasty_text, copy=nasty_text, mode=nasty_text)
def test_migrate_form_and_check_refuse_bad_options(admin_client, fleet, target, bandwidth, downtime, copy, mode):
    data = {
        "target": target,
        "bandwidth_mibs": bandwidth,
        "max_downtime_ms": downtime,
        "copy_storage": copy,
        "mode": mode,
    }
    data = {k: v.replace("\x00", "") for k, v in data.items()}
    before = Job.objects.count()
    no_server_error(admin_client.post(f"/vms/{WEB1}/migrate/", data), repr(data))
    check = admin_client.post(f"/vms/{WEB1}/migrate/check/", data)
    no_server_error(check, repr(data))
    assert check["Content-Type"].startswith("application/json")
    assert Job.objects.count() == before  # nothing valid enough to start a migration on the test driver


@FUZZ
@given(params=st.dictionaries(st.sampled_from(["q", "host", "state", "sort", "page", "per_page", "gone", "fragment",
                                                 "status", "kind", "vm", "user", "action", "outcome", "since", "until"]),
                              nasty_text, max_size=6))  # fmt: skip
def test_lists_take_any_query_string(admin_client, fleet, params):
    params = {k: v.replace("\x00", "") for k, v in params.items()}
    for url in (
        "/",
        "/hosts/",
        "/jobs/",
        "/audit/",
        "/api/vms/",
        "/api/jobs/",
        "/api/audit/",
        f"/hosts/{fleet[0].pk}/",
    ):
        no_server_error(admin_client.get(url, params), f"{url} {params!r}")


@FUZZ
@given(name=nasty_text, days=nasty_text)
def test_token_form_refuses_bad_input(admin_client, db, name, days):
    from knox.models import AuthToken

    response = admin_client.post(
        "/account/tokens/", {"name": name.replace("\x00", ""), "expires_in_days": days.replace("\x00", "")}
    )
    no_server_error(response)
    if response.status_code == 200:
        assert AuthToken.objects.count() == 0


@FUZZ
@given(body=st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=50),
                      st.lists(st.integers(), max_size=3),
                      st.dictionaries(st.text(max_size=10), st.one_of(st.text(max_size=20), st.integers(), st.none(),
                                      st.dictionaries(st.text(max_size=5), st.integers(), max_size=2)), max_size=5)))  # fmt: skip
def test_api_bodies_of_any_shape_are_refused_clearly(admin_client, fleet, body):
    import json

    payload = json.dumps(body, allow_nan=True)
    for url, method in [
        (f"/api/vms/{WEB1}/actions/", "post"),
        ("/api/vms/actions/", "post"),
        (f"/api/vms/{WEB1}/migrate/", "post"),
        (f"/api/vms/{WEB1}/migration/preflight/", "post"),
        ("/api/hosts/", "post"),
        (f"/api/hosts/{fleet[1].pk}/", "patch"),
        (f"/api/hosts/{fleet[1].pk}/maintenance/", "post"),
        ("/api/tokens/", "post"),
    ]:
        response = getattr(admin_client, method)(url, payload, content_type="application/json")
        no_server_error(response, f"{method} {url} {payload[:200]}")
        if response.status_code >= 400:
            assert response.json()["error"], url


# --- particular cases ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("qemu+ssh://root:secret@127.0.0.1/system", "do not put a password in the URI"),
        ("qemu://127.0.0.1/nowhere", "ends in /system or /session"),
        ("qemu+tcp://bad_host!/system", "not a valid host name"),
        ("qemu+tcp://127.0.0.1:99999/system", "out of range"),
        ("qemu+tcp://127.0.0.1/system?evil=1", "unknown URI parameter"),
        ("qemu:///system#frag", "no #fragment"),
        ("x" * 2000, "no more than 1024 characters"),
    ],
)
def test_malformed_uris_are_refused_saying_why(admin_client, db, uri, words):
    response = admin_client.post("/api/hosts/", {"name": "h", "uri": uri}, content_type="application/json")
    assert response.status_code == 400
    assert words in response.json()["error"] or words in str(response.json().get("fields"))
    assert Host.objects.count() == 0


@pytest.mark.parametrize(
    "name", ["", " ", "-leading", "a/b", "semi;colon", "x" * 101, "tab\there", "é-accent", "\u202eevil"]
)
def test_host_names_with_odd_characters_are_refused(admin_client, host_a, name):
    response = admin_client.patch(f"/api/hosts/{host_a.pk}/", {"name": name}, content_type="application/json")
    assert response.status_code == 400, (name, response.content)
    host_a.refresh_from_db()
    assert host_a.name == "host-a"


def test_too_many_form_fields_or_too_big_a_body_is_a_clear_400_or_413(admin_client, host_a, settings):
    """Found by the generated-input run: a form body with more than 1000 fields was a 500."""
    fields = "&".join(f"vms={i}" for i in range(1200))
    response = admin_client.post("/api/vms/actions/", fields, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400 and response.json()["code"] == "malformed"
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = admin_client.post("/api/vms/actions/", {"action": "x" * 5000}, content_type="application/json")
    assert response.status_code == 413 and response.json()["code"] == "too_large"


def test_unknown_ids_are_404_with_a_message(admin_client, db):
    for url in ("/api/hosts/0/", "/api/hosts/abc/", "/api/jobs/99999999999999999999999/", "/api/audit/x/",
                "/api/vms/00000000-0000-4000-8000-000000000000/", "/api/tokens/nope/", "/api/nothing-here/",
                "/hosts/99999/", "/jobs/99999/"):  # fmt: skip
        response = admin_client.get(url) if not url.startswith("/api/tokens/") else admin_client.delete(url)
        assert response.status_code == 404, url
        if url.startswith("/api/"):
            assert response.json()["code"] == "not_found", url


def test_an_action_in_the_wrong_state_is_refused_and_recorded(admin_client, host_a):
    from audit.models import AuditEvent

    response = admin_client.post(f"/api/vms/{WEB1}/actions/", {"action": "resume"}, content_type="application/json")
    assert response.status_code == 400 and response.json()["code"] == "not_allowed"
    assert response.json()["error"] == "Cannot resume web-1: it is already running."
    assert not Job.objects.exists()
    event = AuditEvent.objects.get(action="vm.resume")
    assert event.outcome == "refused" and event.username == "root"


def test_the_api_refuses_xml_bodies(admin_client, host_a):
    """No endpoint takes domain XML (or any XML): it is refused as an unsupported media type."""
    response = admin_client.post(
        f"/api/vms/{WEB1}/actions/", "<domain><name>x</name></domain>", content_type="application/xml"
    )
    assert response.status_code == 415 and "Unsupported media type" in response.json()["error"]


@pytest.mark.django_db(transaction=True)
def test_two_requests_for_one_vm_at_once_one_gets_409_busy(host_a, admin_user, real_queue):
    """The database allows one active job per VM; the loser of the race is told the VM is busy."""
    from django.test import Client

    barrier = threading.Barrier(2)
    answers: list = []

    def request():
        client = Client()
        client.force_login(admin_user)
        barrier.wait()
        response = client.post(f"/api/vms/{WEB1}/actions/", {"action": "suspend"}, content_type="application/json")
        answers.append((response.status_code, response.json()))
        from django.db import connection

        connection.close()

    threads = [threading.Thread(target=request) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    codes = sorted(code for code, _ in answers)
    assert codes == [202, 409], answers
    busy = next(body for code, body in answers if code == 409)
    assert busy["code"] == "busy" and "web-1 is busy" in busy["error"]
    assert Job.objects.filter(vm_uuid=WEB1).count() == 1


@pytest.fixture
def real_queue():
    """Jobs go to the (test) Redis broker and stay queued: no worker takes them during the test."""
    from dashboard.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = False
    yield
    app.conf.task_always_eager = before
    from kombu import Connection

    with Connection(app.conf.broker_url) as conn:  # leave no queued job for later tests' workers
        for queue in ("lifecycle", "migration", "inventory"):
            conn.default_channel.queue_purge(queue)
