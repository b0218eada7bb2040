"""The job engine with a kind registered by the test itself: nothing in the engine changes for it,
and it shows on the job pages and API with its progress, cancel, children and timeline."""

from __future__ import annotations

import threading
import time

import pytest
from rest_framework import serializers

from jobs import engine, kinds
from jobs.kinds import AwaitChildren, JobCancelled, Kind, Outcome, Subject, Verdict
from jobs.models import Job
from jobs.params import WholeNumber
from tests.e2e.stack import wait_for


class CountParams(serializers.Serializer):
    to = WholeNumber(unit="steps", min_value=1, max_value=10, default=3)


def _count(ctx) -> Outcome:
    steps = ctx.params["to"]
    for step in range(1, steps + 1):
        ctx.progress(100 * step // steps, f"step {step} of {steps}", record=True)
    return Outcome(f"counted to {steps}", {"steps": steps})


def _wait(ctx) -> Outcome:
    """Like a shutdown waiting for its guest: it stops at a safe point once cancelled."""
    ctx.progress(20, "waiting", record=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if ctx.cancelled():
            raise JobCancelled("stopped while waiting")
        time.sleep(0.05)
    return Outcome("waited")


def _spread(ctx) -> AwaitChildren:
    for _ in range(ctx.params["to"]):
        ctx.request_child(kind="test.count", target=ctx.job.host, params={"to": 1})
    return AwaitChildren(f"{ctx.params['to']} counts started")


def _host_subject(host) -> Subject:
    # a lock of its own per job, so one test host can hold several at once
    return Subject(noun="host", name=host.name, lock=None, host=host)


COUNT = Kind(
    name="test.count",
    label="Count",
    handler=_count,
    subject=_host_subject,
    lock="host",
    right="manage",
    params=CountParams,
    check=lambda host, params, **_: "" if host.state == "connected" else "it is not connected",
    judge=lambda job: Verdict(job.progress == 100, f"it had reached {job.progress} %"),
    cancellable=True,
    connect=False,
)
WAIT = Kind(name="test.wait", label="Wait", handler=_wait, subject=_host_subject, lock="host", right="manage",
            cancellable=True, connect=False)  # fmt: skip
SPREAD = Kind(name="test.spread", label="Spread", handler=_spread, subject=_host_subject, lock="host", right="manage",
              params=CountParams, connect=False)  # fmt: skip


@pytest.fixture(autouse=True)
def test_kinds():
    for kind in (COUNT, WAIT, SPREAD):
        kinds.register(kind)
    yield
    for kind in (COUNT, WAIT, SPREAD):
        kinds.unregister(kind.name)


def test_a_new_kind_runs_with_progress_and_shows_on_pages_and_api(host_a, admin_client, admin_user, on_commit):
    with on_commit():
        job = engine.job_request(kind="test.count", target=host_a, params={"to": 4}, user=admin_user)
    job.refresh_from_db()
    assert job.status == "succeeded" and job.message == "counted to 4" and job.result == {"steps": 4}
    assert [e.message for e in job.events.all()][2:6] == [f"step {i} of 4" for i in range(1, 5)]
    page = admin_client.get(f"/jobs/{job.pk}/").content.decode()
    assert "Count host-a" in page and "step 3 of 4" in page and "counted to 4" in page
    listed = admin_client.get("/jobs/?kind=test.count").content.decode()
    assert f'data-job-id="{job.pk}"' in listed and "Count" in listed
    data = admin_client.get(f"/api/jobs/{job.pk}/").json()
    assert data["kind"] == "test.count" and data["kind_label"] == "Count" and data["progress"] == 100
    assert [e["progress"] for e in data["events"]][-1] == 100
    assert admin_client.get("/api/jobs/?kind=test.count").json()["count"] == 1


def test_its_options_and_its_check_refuse_before_anything_is_made(host_a, admin_user):
    from core.errors import ServiceError

    with pytest.raises(ServiceError, match="to must be between 1 and 10 steps"):
        engine.job_request(kind="test.count", target=host_a, params={"to": 99}, user=admin_user)
    with pytest.raises(ServiceError, match="Unknown option"):
        engine.job_request(kind="test.count", target=host_a, params={"too": 1}, user=admin_user)
    host_a.state = "unreachable"
    with pytest.raises(ServiceError, match="Cannot count host-a: it is not connected"):
        engine.job_request(kind="test.count", target=host_a, user=admin_user)
    assert not Job.objects.exists()


def test_its_right_is_required(host_a, make_user):
    from core.errors import Forbidden

    with pytest.raises(Forbidden):
        engine.job_request(kind="test.count", target=host_a, user=make_user("olga", "operator"))


@pytest.mark.django_db(transaction=True)
def test_a_running_job_of_it_is_cancelled_from_the_api(host_a, admin_client, admin_user, monkeypatch):
    monkeypatch.setattr("jobs.engine.enqueue_on_commit", lambda *a, **k: None)  # this test's thread is the worker
    job = engine.job_request(kind="test.wait", target=host_a, user=admin_user)

    def run():
        from django.db import connection

        try:
            engine.job_run(job.pk, worker="test-worker")
        finally:
            connection.close()

    worker = threading.Thread(target=run)
    worker.start()
    try:
        assert wait_for(lambda: Job.objects.get(pk=job.pk).progress == 20, 10, message="the job to run")
        running = admin_client.get(f"/api/jobs/{job.pk}/").json()
        assert running["status"] == "running" and running["cancellable"]
        page = admin_client.get(f"/jobs/{job.pk}/").content.decode()
        assert 'data-action="cancel"' in page
        answer = admin_client.post(f"/api/jobs/{job.pk}/cancel/")
        assert answer.status_code == 200 and answer.json()["cancel_requested"]
    finally:
        worker.join(25)
    job.refresh_from_db()
    assert job.status == "cancelled" and job.message == "stopped while waiting"
    assert "cancel requested by root" in [e.message for e in job.events.all()]


def test_a_running_job_of_a_kind_that_cannot_stop_half_way_is_not_cancelled(host_a, admin_user):
    from core.errors import ServiceError

    job = Job.objects.create(kind="test.spread", host=host_a, status="running", worker="w")
    assert not job.cancellable
    with pytest.raises(ServiceError, match="A running spread cannot be stopped half-way"):
        engine.job_cancel(job=job, user=admin_user)
    assert not Job.objects.get(pk=job.pk).cancel_requested


def test_an_interrupted_job_of_it_is_judged_by_its_kind(host_a):
    done = Job.objects.create(kind="test.count", host=host_a, status="running", progress=100, worker="gone")
    half = Job.objects.create(kind="test.count", host=host_a, status="running", progress=40, worker="gone")
    engine.jobs_reap(worker_alive=lambda name: False)
    done.refresh_from_db()
    half.refresh_from_db()
    assert done.status == "succeeded" and "but it had reached 100 %" in done.message
    assert half.status == "failed" and half.error.startswith("interrupted: worker gone stopped; it had reached 40 %")


def test_a_parent_ends_with_its_last_child_without_holding_a_worker(host_a, admin_client, admin_user, on_commit):
    with on_commit():
        parent = engine.job_request(kind="test.spread", target=host_a, params={"to": 3}, user=admin_user)
    parent.refresh_from_db()
    children = list(parent.children.all())
    assert len(children) == 3 and all(c.status == "succeeded" for c in children)
    assert parent.status == "succeeded" and parent.message == "all 3 jobs succeeded" and not parent.awaiting_children
    assert parent.result == {"children": {"succeeded": 3}}
    page = admin_client.get(f"/jobs/{parent.pk}/").content.decode()
    assert "Jobs it started" in page and all(f'data-job-id="{c.pk}"' in page for c in children)
    assert admin_client.get(f"/api/jobs/?parent={parent.pk}").json()["count"] == 3


def test_cancelling_a_waiting_parent_cancels_its_children(host_a, admin_user, monkeypatch):
    parent = engine.job_request(kind="test.spread", target=host_a, params={"to": 2}, user=admin_user)
    monkeypatch.setattr("jobs.engine.enqueue_on_commit", lambda *a, **k: None)  # children stay queued
    engine.job_run(parent.pk, worker="w")
    parent.refresh_from_db()
    assert parent.status == "running" and parent.awaiting_children and parent.worker == ""
    assert parent.cancellable
    engine.job_cancel(job=parent, user=admin_user)
    parent.refresh_from_db()
    assert [c.status for c in parent.children.all()] == ["cancelled", "cancelled"]
    assert parent.status == "cancelled" and parent.message == "cancelled: 2 cancelled"


def test_the_reaper_ends_a_parent_whose_children_all_ended(host_a):
    parent = Job.objects.create(kind="test.spread", host=host_a, status="running", awaiting_children=True)
    Job.objects.create(kind="test.count", host=host_a, parent=parent, status="succeeded")
    Job.objects.create(kind="test.count", host=host_a, parent=parent, status="failed", error="boom")
    ended = engine.jobs_reap(worker_alive=lambda name: False)
    parent.refresh_from_db()
    assert [j.pk for j in ended] == [parent.pk]
    assert parent.status == "failed" and "1 failed, 1 succeeded" in parent.error and "boom" in parent.error
