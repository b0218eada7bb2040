"""Personal API tokens: shown once, hashed at rest, carry their owner's rights, expire, revocable."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone
from knox.models import AuthToken

from accounts.services import token_create

WEB1 = "11111111-1111-4111-8111-111111111101"


def api(token: str | None = None) -> Client:
    headers = {"HTTP_AUTHORIZATION": f"Token {token}"} if token else {}
    return Client(**headers)


def test_the_tokens_page_shows_a_new_token_once_and_then_only_how_it_starts(client, make_user):
    from accounts.models import TokenInfo

    client.force_login(make_user("olga", "operator"))
    response = client.post("/account/tokens/", {"name": "backup script", "expires_in_days": 30})
    assert response.status_code == 201
    token = response.context["created"]["token"]
    assert token.startswith("vf_") and len(token) == 67 and token in response.content.decode()
    row = AuthToken.objects.get()
    assert row.digest != token and token not in row.digest  # only a hash is kept
    assert TokenInfo.objects.get().name == "backup script"
    assert dt.timedelta(days=29) < row.expiry - timezone.now() <= dt.timedelta(days=30)
    page = client.get("/account/tokens/").content.decode()
    assert token not in page and row.token_key in page and "backup script" in page


def test_a_token_acts_with_its_owners_rights_only(host_a, make_user):
    _i, viewer_token = token_create(user=make_user("vic", "viewer"), name="ro", expires_in_days=7)
    _i, operator_token = token_create(user=make_user("olga", "operator"), name="rw", expires_in_days=7)
    assert api(viewer_token).get("/api/vms/").json()["count"] == 3
    refused = api(viewer_token).post(
        f"/api/vms/{WEB1}/actions/", {"action": "suspend"}, content_type="application/json"
    )
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    allowed = api(operator_token).post(
        f"/api/vms/{WEB1}/actions/", {"action": "suspend"}, content_type="application/json"
    )
    assert allowed.status_code == 202, allowed.content  # no CSRF token needed with a token
    assert api(operator_token).post("/api/hosts/", {}, content_type="application/json").status_code == 403


def test_a_revoked_or_expired_token_no_longer_works(db, make_user, client):
    user = make_user("olga", "operator")
    _i, token = token_create(user=user, name="short", expires_in_days=1)
    assert api(token).get("/api/vms/").status_code == 200
    client.force_login(user)
    key = AuthToken.objects.get().token_key
    assert client.post(f"/account/tokens/{key}/revoke/").status_code == 302
    answer = api(token).get("/api/vms/")
    assert answer.status_code == 401 and answer.json() == {"error": "Invalid token.", "code": "authentication_failed"}
    _i, token = token_create(user=user, name="old", expires_in_days=1)
    AuthToken.objects.update(expiry=timezone.now() - dt.timedelta(seconds=1))
    assert api(token).get("/api/vms/").status_code == 401


def test_tokens_of_a_disabled_user_stop_working(db, make_user):
    user = make_user("olga", "operator")
    _i, token = token_create(user=user, name="t", expires_in_days=1)
    user.is_active = False
    user.save()
    assert api(token).get("/api/vms/").status_code == 401


@pytest.mark.parametrize(
    "header",
    ["Token", "Token a b", "Token " + "x" * 5000, "Token vf_\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9",
     "Token vf_notarealtoken", "Bearer vf_x", "Token \x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b"],
)  # fmt: skip
def test_malformed_authorization_headers_get_401_not_500(db, header):
    response = Client(HTTP_AUTHORIZATION=header.encode("latin-1", "replace").decode("latin-1")).get("/api/vms/")
    assert response.status_code == 401, (header, response.status_code)
    assert response.json()["error"]


def test_the_api_lists_creates_and_revokes_your_own_tokens(client, make_user):
    olga = make_user("olga", "operator")
    client.force_login(olga)
    created = client.post("/api/tokens/", {"name": "ci", "expires_in_days": 7}, content_type="application/json")
    assert created.status_code == 201
    body = created.json()
    assert set(body) == {"id", "name", "created", "expires", "token"} and body["token"].startswith(body["id"])
    listed = client.get("/api/tokens/").json()
    assert [t["name"] for t in listed] == ["ci"] and "token" not in listed[0]
    # with the token itself: list yes, create no (a leaked token must not mint longer-lived ones)
    assert [t["id"] for t in api(body["token"]).get("/api/tokens/").json()] == [body["id"]]
    minted = api(body["token"]).post("/api/tokens/", {"name": "x"}, content_type="application/json")
    assert minted.status_code == 403 and "signed-in session" in minted.json()["error"]
    # others' tokens are not yours to revoke: they do not exist for you
    _i, other = token_create(user=make_user("vic", "viewer"), name="vic's", expires_in_days=7)
    other_id = AuthToken.objects.get(user__username="vic").token_key
    assert client.delete(f"/api/tokens/{other_id}/").status_code == 404
    assert api(other).get("/api/vms/").status_code == 200
    assert client.delete(f"/api/tokens/{body['id']}/").status_code == 204
    assert api(body["token"]).get("/api/vms/").status_code == 401


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "", "expires_in_days": 7}, "name"),
        ({"name": "x" * 101, "expires_in_days": 7}, "name"),
        ({"name": "tab\tname\x07", "expires_in_days": 7}, "name"),
        ({"name": "ok", "expires_in_days": 0}, "expires_in_days"),
        ({"name": "ok", "expires_in_days": 366}, "expires_in_days"),
        ({"name": "ok", "expires_in_days": "soon"}, "expires_in_days"),
    ],
)
def test_token_names_and_lifetimes_are_checked(client, make_user, data, field):
    client.force_login(make_user("olga", "operator"))
    response = client.post("/api/tokens/", data, content_type="application/json")
    assert response.status_code == 400
    body = response.json()
    assert field in (body.get("fields") or {}) or body.get("field") == field, body
    assert not AuthToken.objects.exists()


def test_creating_and_revoking_tokens_is_audited_without_the_token(client, make_user, on_commit):
    from audit.models import AuditEvent

    client.force_login(make_user("olga", "operator"))
    with on_commit():
        token = client.post(
            "/api/tokens/", {"name": "ci", "expires_in_days": 7}, content_type="application/json"
        ).json()
        client.delete(f"/api/tokens/{token['id']}/")
    created, revoked = AuditEvent.objects.filter(action__startswith="token.").order_by("pk")
    assert (created.action, created.username, created.target_name, created.target_id) == (
        "token.create",
        "olga",
        "ci",
        token["id"],
    )
    assert revoked.action == "token.revoke"
    for event in (created, revoked):
        assert token["token"] not in str(event.details) + event.message + event.target_id


def test_administrators_see_and_revoke_tokens_in_the_admin_site(client, make_user, on_commit):
    from audit.models import AuditEvent

    _i, token = token_create(user=make_user("olga", "operator"), name="laptop", expires_in_days=7)
    client.force_login(make_user("ada", "admin"))
    listing = client.get("/admin/knox/authtoken/").content.decode()
    assert "laptop" in listing and token not in listing
    row = AuthToken.objects.get()
    assert client.get("/admin/knox/authtoken/add/").status_code == 403  # nobody mints tokens for others
    with on_commit():
        client.post("/admin/knox/authtoken/", {"action": "revoke", "_selected_action": [row.pk]})
    assert not AuthToken.objects.exists()
    assert AuditEvent.objects.get(action="token.revoke").username == "ada"
