"""The snapshots API and the VM page's Snapshots section: the tree, 202 with the job, bad input as a
clear 400/404 (never a 500), the configure right, and refused operations shown disabled with why."""

from __future__ import annotations

import pytest

from jobs.models import Job
from snapshots.models import Snapshot

APP = "11111111-1111-4111-8111-111111111901"
RAW = "11111111-1111-4111-8111-111111111902"
BASE = f"/api/vms/{APP}/snapshots/"


@pytest.fixture
def host(add_host):
    return add_host("snaphost", "host-snap.xml")


@pytest.fixture
def api(admin_client, on_commit):
    def call(method, url, body=None):
        with on_commit():
            if body is None:
                return getattr(admin_client, method)(url)
            return getattr(admin_client, method)(url, body, content_type="application/json")

    return call


def test_take_list_revert_and_delete_through_the_api(host, api):
    response = api("post", BASE, {"name": "s1", "description": "first"})
    assert response.status_code == 202, response.content
    assert Job.objects.get(pk=response.json()["id"]).status == "succeeded"
    assert api("post", BASE, {"name": "s2"}).status_code == 202
    body = api("get", BASE).json()
    assert [(s["name"], s["depth"], s["current"], s["descendants"]) for s in body["snapshots"]] == [
        ("s1", 0, False, 1), ("s2", 1, True, 0)]  # fmt: skip
    assert body["snapshots"][0]["memory"] == "internal" and body["snapshots"][0]["refused"]["revert"] == ""
    response = api("post", f"{BASE}s1/revert/", {"after": "shutoff"})
    assert response.status_code == 202 and Job.objects.get(pk=response.json()["id"]).status == "succeeded"
    response = api("delete", f"{BASE}s1/?children=1")
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["id"])
    assert job.status == "succeeded" and job.params["children"] is True
    assert api("get", BASE).json()["snapshots"] == []


@pytest.mark.parametrize("name", ["a/b", "<x/>", "a&b", "x y", "", "a" * 101])
def test_bad_names_are_a_clear_400(host, api, name):
    if name == "":
        return  # empty: a timestamp (tested with the jobs)
    response = api("post", BASE, {"name": name})
    assert response.status_code == 400, response.content
    body = response.json()
    assert "not a usable snapshot name" in body["error"] and body["field"] == "params.name"


def test_bad_input_never_gives_a_500(host, api):
    assert api("post", BASE, {"name": "s1"}).status_code == 202
    dup = api("post", BASE, {"name": "s1"})
    assert (
        dup.status_code == 400
        and dup.json()["error"] == "Cannot take snapshot app: it already has a snapshot named s1."
    )
    unknown_vm = api("get", "/api/vms/11111111-1111-4111-8111-000000000000/snapshots/")
    assert unknown_vm.status_code == 404 and "no VM with UUID" in unknown_vm.json()["error"]
    assert api("post", f"{BASE}nope/revert/", {}).status_code == 404
    assert api("delete", f"{BASE}nope/").status_code == 404
    bad = api("post", f"{BASE}s1/revert/", {"after": "sideways"})
    assert bad.status_code == 400 and "after" in bad.json()["field"]
    assert api("post", BASE, {"name": "s2", "memory": "perhaps"}).status_code == 400
    assert api("post", BASE, {"name": "s2", "colour": "red"}).json()["error"].startswith("Unknown option(s)")
    assert api("post", BASE, ["not", "an", "object"]).status_code == 400
    assert api("post", f"{BASE}a%3Cb%3E/revert/", {}).status_code == 400
    raw = api("post", f"/api/vms/{RAW}/snapshots/", {"name": "r"})
    assert raw.status_code == 400 and "disk vdb" in raw.json()["error"] and "disk-only" in raw.json()["error"]


def test_a_viewer_sees_the_tree_but_takes_nothing(host, client, make_user, on_commit):
    client.force_login(make_user("vic", "viewer"))
    assert client.get(BASE).status_code == 200
    with on_commit():
        response = client.post(BASE, {"name": "s"}, content_type="application/json")
    assert response.status_code == 403 and response.json()["code"] == "forbidden"
    assert not Snapshot.objects.exists()


def test_the_vm_page_shows_the_tree_and_refusals(host, api, admin_client):
    assert api("post", BASE, {"name": "s1", "description": "before <upgrade>"}).status_code == 202
    page = admin_client.get(f"/vms/{APP}/").content.decode()
    assert 'id="vm-snapshots"' in page and 'data-snapshot="s1"' in page and "before &lt;upgrade&gt;" in page
    assert "current</span>" in page and "when taken" in page
    # disk-only is refused on this libvirt (as on the lab): shown disabled, with why
    assert 'data-refusal="disk_only"' in page and "could neither revert it" in page
    fragment = admin_client.get(f"/vms/{APP}/?fragment=snapshots").content.decode()
    assert fragment.lstrip().startswith('<div class="panel-head">') and 'data-snapshot="s1"' in fragment
    raw_page = admin_client.get(f"/vms/{RAW}/").content.decode()
    assert 'data-refusal="internal"' in raw_page and "is raw" in raw_page


def test_the_page_forms_ask_for_jobs(host, admin_client, on_commit):
    with on_commit():
        response = admin_client.post(f"/vms/{APP}/snapshots/new/", {"name": "p1", "memory": "1", "disk_only": ""})
    assert response.status_code == 302 and response["Location"].endswith("#vm-snapshots")
    assert Snapshot.objects.filter(name="p1").exists()
    with on_commit():
        admin_client.post(f"/vms/{APP}/snapshots/p1/revert/", {"after": "running"})
    assert Job.objects.filter(kind="snapshot.revert", status="succeeded").exists()
    with on_commit():
        admin_client.post(f"/vms/{APP}/snapshots/p1/delete/", {})
    assert not Snapshot.objects.filter(name="p1").exists()
    with on_commit():
        response = admin_client.post(f"/vms/{APP}/snapshots/new/", {"name": "a/b"}, follow=True)
    assert "not a usable snapshot name" in response.content.decode()
