import pytest
from django.urls import reverse

from hosts.models import Host
from tests.helpers import driver_uri


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/", "/hosts/", "/hosts/add/", "/api/hosts/", "/api/vms/"])
def test_pages_and_api_require_login(client, url):
    response = client.get(url)
    assert response.status_code in (302, 401, 403)
    if response.status_code == 302:
        assert response["Location"].startswith("/login/")


def test_hosts_list_and_detail_show_the_host(admin_client, host_a):
    body = admin_client.get("/hosts/").content.decode()
    assert "host-a" in body and "connected" in body
    body = admin_client.get(f"/hosts/{host_a.pk}/").content.decode()
    assert "web-1" in body and "db-1" in body and host_a.uri in body


def test_unknown_host_is_a_404_not_a_500(admin_client):
    assert admin_client.get("/hosts/999999/").status_code == 404


def test_add_form_connects_and_adds(admin_client, on_commit):
    with on_commit():
        response = admin_client.post(reverse("hosts:add"), {"name": "via-form", "uri": driver_uri("host-b.xml")})
    host = Host.objects.get(name="via-form")
    assert response.status_code == 302 and response["Location"] == f"/hosts/{host.pk}/"
    assert host.vms.filter(name="cache-1").exists()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("nonsense", "has no scheme"),
        ("qemu+tcp://127.0.0.1:1/system", "Could not connect"),
        ("qemu+tcp://host/system?x=1", "unknown URI parameter"),
    ],
)
def test_add_form_shows_what_is_wrong_next_to_the_uri(admin_client, uri, message):
    response = admin_client.post(reverse("hosts:add"), {"name": "x", "uri": uri})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Host.objects.filter(name="x").exists()


def test_add_form_refuses_a_duplicate_uri(admin_client, host_a):
    response = admin_client.post(reverse("hosts:add"), {"name": "dup", "uri": host_a.uri})
    assert "already registered" in response.content.decode()


def test_edit_and_remove(admin_client, host_a):
    response = admin_client.post(reverse("hosts:edit", args=[host_a.pk]), {"name": "renamed", "uri": host_a.uri})
    assert response.status_code == 302 and Host.objects.get(pk=host_a.pk).name == "renamed"
    assert admin_client.get(reverse("hosts:remove", args=[host_a.pk])).status_code == 200
    response = admin_client.post(reverse("hosts:remove", args=[host_a.pk]))
    assert response.status_code == 302 and not Host.objects.filter(pk=host_a.pk).exists()


def test_sync_now_is_a_post(admin_client, host_a, on_commit):
    assert admin_client.get(reverse("hosts:sync", args=[host_a.pk])).status_code == 405
    with on_commit():
        assert admin_client.post(reverse("hosts:sync", args=[host_a.pk])).status_code == 302
