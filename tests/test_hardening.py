"""Hardening: sign-in throttling (and who the client is, behind a proxy or not), CSRF on every
form, security headers and the Content-Security-Policy on every page."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

from core.net import client_ip, forwarded_client

WEB1 = "11111111-1111-4111-8111-111111111101"


@pytest.fixture
def olga(make_user):
    return make_user("olga", "operator", password="Right-pw-123")


def sign_in(client, password, **extra):
    return client.post("/login/", {"username": "olga", "password": password}, **extra)


def test_five_failed_sign_ins_lock_the_account_from_that_address_and_say_how_long(olga, client):
    for _ in range(4):
        assert sign_in(client, "nope", REMOTE_ADDR="192.0.2.10").status_code == 200
    locked = sign_in(client, "nope", REMOTE_ADDR="192.0.2.10")
    assert locked.status_code == 429
    assert "Too many failed sign-ins. Wait 15 minutes, then try again." in locked.content.decode()
    # now even the right password is refused from there, for a while
    assert sign_in(client, "Right-pw-123", REMOTE_ADDR="192.0.2.10").status_code == 429
    # the same account from elsewhere is not locked (user name and address together)
    other = Client()
    assert sign_in(other, "Right-pw-123", REMOTE_ADDR="192.0.2.99").status_code == 302


def test_a_forged_x_forwarded_for_does_not_escape_the_lockout(olga, client):
    """Without our reverse proxy (VIRTFLEET_BEHIND_PROXY) any client can send the header: it is ignored."""
    for n in range(5):
        sign_in(client, "nope", REMOTE_ADDR="192.0.2.10", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
    assert sign_in(client, "Right-pw-123", REMOTE_ADDR="192.0.2.10", HTTP_X_FORWARDED_FOR="10.9.9.9").status_code == 429


def test_behind_our_proxy_the_client_is_the_address_it_appended(olga, settings):
    settings.BEHIND_PROXY = True
    client = Client()
    for _ in range(5):
        sign_in(client, "nope", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="spoofed, 198.51.100.20")
    assert (
        sign_in(client, "Right-pw-123", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.20").status_code
        == 429
    )
    # another client behind the same proxy is not locked out
    assert (
        sign_in(Client(), "Right-pw-123", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.21").status_code
        == 302
    )


def test_lockouts_are_in_the_audit_log(olga, client):
    from audit.models import AuditEvent

    for _ in range(5):
        sign_in(client, "nope", REMOTE_ADDR="192.0.2.10")
    event = AuditEvent.objects.get(action="login.locked")
    assert (event.outcome, event.ip, event.target_name) == ("refused", "192.0.2.10", "olga")
    assert AuditEvent.objects.filter(action="login.failed").count() == 5


@pytest.mark.parametrize(
    ("behind", "forwarded", "peer", "expected"),
    [
        (False, "203.0.113.1", "192.0.2.1", "192.0.2.1"),
        (True, "203.0.113.1", "127.0.0.1", "203.0.113.1"),
        (True, "6.6.6.6, 203.0.113.1", "127.0.0.1", "203.0.113.1"),  # what the client wrote comes first
        (True, "", "127.0.0.1", "127.0.0.1"),
        (True, "not-an-ip", "127.0.0.1", None),
        (False, "", "::ffff:192.0.2.1", "::ffff:c000:201"),
    ],
)
def test_client_address(settings, behind, forwarded, peer, expected):
    settings.BEHIND_PROXY = behind
    assert forwarded_client(forwarded, peer) == expected


def test_two_proxies_in_a_row(settings, rf):
    settings.BEHIND_PROXY, settings.PROXY_COUNT = True, 2
    request = rf.get("/", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.1, 10.0.0.2", REMOTE_ADDR="127.0.0.1")
    assert client_ip(request) == "203.0.113.1"


# --- CSRF ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "data"),
    [
        ("/hosts/add/", {"name": "x", "uri": "qemu:///system"}),
        (f"/vms/{WEB1}/actions/suspend/", {}),
        ("/vms/bulk/", {"action": "suspend", "vms": [WEB1]}),
        (f"/vms/{WEB1}/migrate/check/", {"target": "1"}),
        (f"/vms/{WEB1}/console/ticket/", {}),
        ("/account/tokens/", {"name": "x", "expires_in_days": 7}),
        ("/logout/", {}),
        ("/api/tokens/", {"name": "x"}),
        (f"/api/vms/{WEB1}/actions/", {"action": "suspend"}),
    ],
)
def test_every_form_and_session_call_needs_the_csrf_token(host_a, admin_user, url, data):
    from jobs.models import Job

    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    response = client.post(url, data)
    assert response.status_code == 403, url
    assert b"CSRF token" in response.content or b"CSRF" in response.content
    assert not Job.objects.exists()


def test_pages_carry_the_csrf_token_in_every_form(admin_client, host_a):
    import re

    for url in ("/", f"/vms/{WEB1}/", f"/vms/{WEB1}/migrate/", f"/hosts/{host_a.pk}/", "/hosts/add/", "/account/tokens/",
                f"/vms/{WEB1}/delete/", f"/hosts/{host_a.pk}/remove/", f"/hosts/{host_a.pk}/edit/"):  # fmt: skip
        html = admin_client.get(url).content.decode()
        for form in re.findall(r"<form[^>]*method=\"post\"[^>]*>.*?</form>", html, flags=re.S):
            assert "csrfmiddlewaretoken" in form, (url, form[:200])


# --- headers -------------------------------------------------------------------------------------------------
def test_pages_send_a_strict_content_security_policy_and_the_other_security_headers(admin_client, host_a):
    response = admin_client.get(f"/vms/{WEB1}/console/")
    csp = dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";") if part.strip())
    assert csp["default-src"] == "'self'" and csp["script-src"] == "'self'" and csp["style-src"] == "'self'"
    assert csp["img-src"] == "'self' data:" and csp["frame-ancestors"] == "'none'" and csp["object-src"] == "'none'"
    assert "ws://127.0.0.1:6080" in csp["connect-src"] and "wss://127.0.0.1:6080" in csp["connect-src"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


def test_no_template_has_inline_script_or_style():
    """The CSP allows neither; the browser test checks the pages themselves."""
    import re
    from pathlib import Path

    from tests.bootstrap import ROOT

    for path in list((ROOT / "templates").rglob("*.html")):
        text = path.read_text()
        assert not re.search(r"\sstyle=", text), path
        assert not re.search(r"\son[a-z]+=", text), path
        for tag in re.findall(r"<script[^>]*>", text):
            assert "src=" in tag, (path, tag)
    for path in Path(ROOT / "static" / "js").glob("*.js"):
        assert 'style="' not in path.read_text(), path


@override_settings(DEBUG=False)
def test_errors_never_show_a_traceback(admin_client, db):
    response = admin_client.get("/hosts/999999/")
    assert response.status_code == 404 and b"Traceback" not in response.content
