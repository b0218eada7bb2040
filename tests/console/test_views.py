"""The console page, its ticket endpoint and the console API: JSON answers, never a 500 or a redirect."""

import pytest

from console.services import console_ticket_take

RUNNING = "22222222-2222-4222-8222-222222222201"
OFF = "22222222-2222-4222-8222-222222222206"


@pytest.fixture
def console_host(add_host):
    return add_host("console-host", "host-console.xml")


def test_console_page_shows_the_screen_area_and_no_endpoint(admin_client, console_host):
    response = admin_client.get(f"/vms/{RUNNING}/console/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="console-screen"' in html and 'data-refusal=""' in html
    assert "5911" not in html  # the VNC port stays on the server


def test_console_page_of_a_shut_off_vm_explains_instead_of_connecting(admin_client, console_host):
    html = admin_client.get(f"/vms/{OFF}/console/").content.decode()
    assert "the VM is shut off; start it to see its screen" in html


def test_vm_page_has_a_console_button_only_when_it_can_open(admin_client, console_host):
    running = admin_client.get(f"/vms/{RUNNING}/").content.decode()
    assert f'href="/vms/{RUNNING}/console/"' in running
    off = admin_client.get(f"/vms/{OFF}/").content.decode()
    assert 'aria-disabled="true" title="Console: the VM is shut off' in off


def test_ticket_endpoint_answers_json(admin_client, console_host):
    response = admin_client.post(f"/vms/{RUNNING}/console/ticket/", HTTP_HOST="127.0.0.1:8000")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"token", "url", "expires_in"}
    assert body["url"].startswith("ws://127.0.0.1:6080/?token=")
    assert console_ticket_take(token=body["token"]).vm_uuid == RUNNING


def test_ticket_endpoint_refusals_are_json(admin_client, console_host):
    from django.test import Client

    refused = admin_client.post(f"/vms/{OFF}/console/ticket/")
    assert refused.status_code == 409 and refused.json()["code"] == "not_running"
    missing = admin_client.post("/vms/99999999-9999-4999-8999-999999999999/console/ticket/")
    assert missing.status_code == 404 and "no VM" in missing.json()["error"]
    anonymous = Client().post(f"/vms/{RUNNING}/console/ticket/")
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "not_signed_in"
    assert admin_client.get(f"/vms/{RUNNING}/console/ticket/").status_code == 405


def test_api_issues_tickets_and_lists_sessions(admin_client, console_host, admin_user):
    from console.services import console_connect_authorize, console_session_open

    response = admin_client.post(f"/api/vms/{RUNNING}/console/", HTTP_HOST="127.0.0.1:8000")
    assert response.status_code == 201, response.content
    data = console_connect_authorize(token=response.json()["token"], user=admin_user)
    console_session_open(ticket=data, user=admin_user, client_address="192.0.2.7")
    sessions = admin_client.get(f"/api/vms/{RUNNING}/console/sessions/").json()
    assert sessions["count"] == 1
    row = sessions["results"][0]
    assert (row["username"], row["client_address"], row["closed_at"]) == ("root", "192.0.2.7", None)
    assert "target" not in row  # where the VNC server listens is not the browser's business
    assert admin_client.post(f"/api/vms/{OFF}/console/").json()["code"] == "not_running"
    assert admin_client.post("/api/vms/not-a-uuid-at-all-0000000000000000/console/").status_code == 404


def test_api_needs_a_signed_in_user(client, console_host):
    assert client.post(f"/api/vms/{RUNNING}/console/").status_code == 401
    assert client.get(f"/api/vms/{RUNNING}/console/sessions/").status_code == 401
