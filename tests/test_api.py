import pytest

from hosts.models import Host
from tests.helpers import driver_uri


def test_api_lists_hosts_without_credentials(admin_client, host_a):
    Host.objects.filter(pk=host_a.pk).update(sasl_password="secret-pw")
    data = admin_client.get("/api/hosts/").json()
    assert data[0]["name"] == "host-a" and data[0]["vm_count"] == 3
    assert data[0]["has_sasl_password"] is True
    assert "secret-pw" not in str(data)


def test_api_vm_list_filters_sorts_and_paginates(admin_client, host_a, host_b):
    data = admin_client.get("/api/vms/?sort=name&limit=2").json()
    assert data["count"] == 4 and [v["name"] for v in data["results"]] == ["batch-1", "cache-1"]
    assert data["next"]
    data = admin_client.get(f"/api/vms/?host={host_b.pk}").json()
    assert [v["name"] for v in data["results"]] == ["cache-1"]
    data = admin_client.get("/api/vms/?state=running").json()
    assert {v["name"] for v in data["results"]} == {"web-1", "cache-1"}


def test_api_vm_detail_has_xml(admin_client, host_a):
    uuid = "11111111-1111-4111-8111-111111111101"
    data = admin_client.get(f"/api/vms/{uuid}/").json()
    assert data["name"] == "web-1" and "<domain" in data["xml"]
    # browsers never learn VNC endpoints: not as fields, not inside the XML
    assert data["graphics_type"] == "vnc" and data["graphics_reach"] == "its host's loopback only"
    assert not {"graphics_port", "graphics_listen", "graphics_socket"} & set(data)
    assert "5901" not in data["xml"] and ("port='hidden'" in data["xml"] or 'port="hidden"' in data["xml"])


@pytest.mark.django_db
def test_api_unknown_ids_are_404_json(admin_client):
    response = admin_client.get("/api/vms/99999999-9999-4999-8999-999999999999/")
    assert response.status_code == 404 and "no VM" in response.json()["error"]
    response = admin_client.get("/api/hosts/424242/")
    assert response.status_code == 404 and "no host" in response.json()["error"]


def test_api_add_host_and_errors(admin_client, on_commit):
    with on_commit():
        response = admin_client.post(
            "/api/hosts/", {"name": "api-host", "uri": driver_uri("host-b.xml")}, content_type="application/json"
        )
    assert response.status_code == 201, response.content
    assert response.json()["state"] == "connected"
    again = admin_client.post(
        "/api/hosts/", {"name": "other", "uri": driver_uri("host-b.xml")}, content_type="application/json"
    )
    assert again.status_code == 400 and again.json()["field"] == "uri"
    bad = admin_client.post("/api/hosts/", {"name": "x"}, content_type="application/json")
    assert bad.status_code == 400 and "uri" in bad.json()["fields"]
    garbage = admin_client.post("/api/hosts/", "[1,2", content_type="application/json")
    assert garbage.status_code == 400
    not_object = admin_client.post("/api/hosts/", "[1,2]", content_type="application/json")
    assert not_object.status_code == 400


def test_api_edit_and_delete_host(admin_client, host_a):
    response = admin_client.patch(f"/api/hosts/{host_a.pk}/", {"name": "renamed"}, content_type="application/json")
    assert response.status_code == 200 and response.json()["name"] == "renamed"
    assert admin_client.delete(f"/api/hosts/{host_a.pk}/").status_code == 204
    assert admin_client.delete(f"/api/hosts/{host_a.pk}/").status_code == 404


@pytest.mark.django_db
def test_openapi_schema_is_served(admin_client):
    response = admin_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert "/api/hosts/" in schema["paths"] and "/api/vms/{uuid}/" in schema["paths"]


def test_api_partial_update_keeps_fields_it_does_not_name(admin_client, host_a):
    Host.objects.filter(pk=host_a.pk).update(migration_address="10.1.1.1")
    response = admin_client.patch(f"/api/hosts/{host_a.pk}/", {"name": "renamed"}, content_type="application/json")
    assert response.status_code == 200 and response.json()["migration_address"] == "10.1.1.1"
    bad = admin_client.patch(f"/api/hosts/{host_a.pk}/", "[1]", content_type="application/json")
    assert bad.status_code == 400
