"""Operation buttons, bulk actions, job pages and the jobs API."""

from jobs.models import Job
from vms.models import VM

WEB1 = "11111111-1111-4111-8111-111111111101"
DB1 = "11111111-1111-4111-8111-111111111102"


def test_vm_page_offers_only_allowed_operations(admin_client, host_a):
    body = admin_client.get(f"/vms/{DB1}/").content.decode()  # shut off
    assert 'data-action="start"' in body
    suspend = body[body.index('data-action="suspend"') - 200 : body.index('data-action="suspend"') + 200]
    assert "disabled" in suspend and "not possible while the VM is shut off" in suspend


def test_operation_button_runs_a_job_and_reports_it(admin_client, host_a, on_commit):
    with on_commit():
        response = admin_client.post(f"/vms/{WEB1}/actions/suspend/", {"next": f"/vms/{WEB1}/"}, follow=True)
    body = response.content.decode()
    assert "Suspend of web-1 requested (job" in body
    assert VM.objects.get(uuid=WEB1).state == "paused"


def test_refused_operation_shows_the_reason_where_the_user_looks(admin_client, host_a):
    response = admin_client.post(f"/vms/{DB1}/actions/suspend/", follow=True)
    assert "Cannot suspend db-1: not possible while the VM is shut off." in response.content.decode()
    assert not Job.objects.exists()


def test_unknown_operation_name_is_a_message_not_an_error_page(admin_client, host_a):
    response = admin_client.post(f"/vms/{WEB1}/actions/explode/", follow=True)
    assert response.status_code == 200 and "Unknown action" in response.content.decode()


def test_open_redirects_are_refused(admin_client, host_a, on_commit):
    with on_commit():
        response = admin_client.post(f"/vms/{WEB1}/actions/suspend/", {"next": "https://evil.example/"})
    assert response["Location"] == f"/vms/{WEB1}/"


def test_delete_page_with_options(admin_client, host_a, on_commit):
    assert "Also delete its disk volumes" in admin_client.get(f"/vms/{WEB1}/delete/").content.decode()
    response = admin_client.post(f"/vms/{WEB1}/delete/", follow=True)
    assert "it is running" in response.content.decode()
    with on_commit():
        admin_client.post(f"/vms/{WEB1}/delete/", {"force": "on"})
    assert VM.objects.get(uuid=WEB1).is_gone


def test_bulk_action_from_the_fleet_table(admin_client, host_a, on_commit):
    uuids = list(VM.objects.values_list("uuid", flat=True))
    with on_commit():
        response = admin_client.post("/vms/bulk/", {"action": "suspend", "vms": [*uuids, "not-a-uuid"]}, follow=True)
    body = response.content.decode()
    assert "1 suspend job(s) started." in body and "2 VM(s) skipped" in body
    assert admin_client.post("/vms/bulk/", {"action": "suspend"}, follow=True).status_code == 200


def test_jobs_pages(admin_client, host_a, on_commit):
    with on_commit():
        admin_client.post(f"/vms/{WEB1}/actions/suspend/")
    job = Job.objects.get()
    body = admin_client.get("/jobs/").content.decode()
    assert "web-1" in body and "Suspend" in body and "Succeeded" in body
    body = admin_client.get(f"/jobs/{job.pk}/").content.decode()
    assert "Timeline" in body and "requested by root" in body
    assert admin_client.get("/jobs/?status=failed&fragment=jobs").content.decode().count("<tr") == 0
    assert admin_client.get("/jobs/999999/").status_code == 404
    for junk in ("?status=zzz", "?kind=zzz", "?vm=nope", "?host=abc", "?page=-1"):
        assert admin_client.get("/jobs/" + junk).status_code == 200


def test_api_action_bulk_get_and_cancel(admin_client, host_a, on_commit):
    with on_commit():
        response = admin_client.post(
            f"/api/vms/{WEB1}/actions/", {"action": "suspend"}, content_type="application/json"
        )
    assert response.status_code == 202 and response.json()["kind"] == "suspend"
    job_id = response.json()["id"]
    data = admin_client.get(f"/api/jobs/{job_id}/").json()
    assert data["status"] == "succeeded" and [e["status"] for e in data["events"]] == ["queued", "running", "succeeded"]
    again = admin_client.post(f"/api/vms/{WEB1}/actions/", {"action": "suspend"}, content_type="application/json")
    assert again.status_code == 400 and "already paused" in again.json()["error"]
    with on_commit():
        bulk = admin_client.post(
            "/api/vms/actions/",
            {"action": "resume", "vms": [WEB1, DB1, "99999999-9999-4999-8999-999999999999"]},
            content_type="application/json",
        )
    body = bulk.json()
    assert bulk.status_code == 202 and [j["vm_name"] for j in body["jobs"]] == ["web-1"]
    assert {r["code"] for r in body["refused"]} == {"not_found", "not_allowed"}
    cancel = admin_client.post(f"/api/jobs/{job_id}/cancel/")
    assert cancel.status_code == 400 and "already succeeded" in cancel.json()["error"]
    listing = admin_client.get(f"/api/jobs/?vm={WEB1}&status=succeeded").json()
    assert listing["count"] == 2


def test_api_busy_vm_is_a_409(admin_client, host_a):
    first = admin_client.post(f"/api/vms/{WEB1}/actions/", {"action": "suspend"}, content_type="application/json")
    assert first.status_code == 202  # stays queued: on-commit hooks do not run here
    second = admin_client.post(f"/api/vms/{WEB1}/actions/", {"action": "reboot"}, content_type="application/json")
    assert second.status_code == 409 and "busy with suspend" in second.json()["error"]


def test_api_rejects_malformed_action_requests(admin_client, host_a):
    for body in (
        {},
        {"action": 5},
        {"action": "suspend", "params": "x"},
        {"action": "shutdown", "params": {"timeout": -1}},
    ):
        response = admin_client.post(f"/api/vms/{WEB1}/actions/", body, content_type="application/json")
        assert response.status_code == 400, body
    response = admin_client.post(
        "/api/vms/actions/", {"action": "suspend", "vms": ["x"]}, content_type="application/json"
    )
    assert response.status_code == 400
