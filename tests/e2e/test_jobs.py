"""Lifecycle jobs end to end: browser → daphne → Redis → a real Celery worker → libvirt on a lab host."""

import signal

import pytest

import lab
from jobs.models import Job
from tests.e2e.conftest import domstate, screenshot, wait_for
from vms.models import VM

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def job_done(job_id):
    job = Job.objects.get(pk=job_id)
    return job if job.status in ("succeeded", "failed", "cancelled") else None


def test_operations_from_the_vm_page_run_on_a_worker_and_virsh_agrees(page, stack, lab_state, lab_hosts):
    lab1 = lab_state.real_hosts[0]
    guest = f"{lab1.name}-vm1"
    vm = VM.objects.get(name=guest)
    page.goto(f"{stack.url}/vms/{vm.uuid}/")
    page.wait_for_selector("#live-indicator.live-up")

    page.click('button[data-action="suspend"]')
    job = wait_for(lambda: job_done(Job.objects.latest("id").pk), 20, message="the suspend job")
    assert job.status == "succeeded" and job.worker.startswith("worker@")
    assert domstate(lab1, guest) == "paused"
    page.wait_for_function(
        "document.querySelector('#vm-head [data-field=state]').innerText.toLowerCase().includes('paused')"
    )

    page.click('button[data-action="resume"]')
    wait_for(lambda: job_done(Job.objects.latest("id").pk), 20, message="the resume job")
    assert domstate(lab1, guest) == "running"

    # ACPI shutdown of the real guest: the power button reaches its acpid, the guest powers off.
    page.once("dialog", lambda d: d.accept())
    page.click('button[data-action="shutdown"]')
    page.wait_for_selector(".job-active .progress", timeout=5000)
    screenshot(page, "vm-shutdown-in-progress")
    job = wait_for(lambda: job_done(Job.objects.latest("id").pk), 60, message="the shutdown job")
    assert job.status == "succeeded" and "powered off after" in job.message, job.error
    assert domstate(lab1, guest) == "shut off"
    page.wait_for_function(
        "document.querySelector('#vm-head [data-field=state]').innerText.toLowerCase().includes('shut off')"
    )
    screenshot(page, "vm-after-shutdown")

    page.click('button[data-action="start"]')
    job = wait_for(lambda: job_done(Job.objects.latest("id").pk), 30, message="the start job")
    assert job.status == "succeeded" and domstate(lab1, guest) == "running"
    lab.wait_guest_ready(lab1, guest, timeout=30)
    events = [e.status for e in job.events.all()]
    assert events == ["queued", "running", "succeeded"]


def test_a_worker_killed_mid_job_leaves_no_job_running_forever(
    stack, lab_state, lab_hosts, admin_user_e2e, real_broker
):
    """SIGKILL the worker while a job runs; after a restart the job ends with a clear reason."""
    from django.db import transaction

    from vms.services import vm_job_request

    lab2 = lab_state.real_hosts[1]
    guest = f"{lab2.name}-vm1"
    vm = VM.objects.select_related("host").get(name=guest)
    stack.stop("worker")  # no worker: the job waits in the queue
    with transaction.atomic():
        job = vm_job_request(vm=vm, action="suspend", user=admin_user_e2e)
    lab.kill_libvirtd(lab_state.base_dir, lab2.name)  # the worker will retry: a job that stays running
    try:
        stack.start_worker("worker")
        wait_for(lambda: Job.objects.get(pk=job.pk).status == "running", 20, message="the job to start")
        wait_for(lambda: "retrying in" in Job.objects.get(pk=job.pk).message, 20, message="the job to be retrying")
        stack.stop("worker", sig=signal.SIGKILL)
        assert Job.objects.get(pk=job.pk).status == "running"  # the dead worker cannot end it
    finally:
        lab.start_libvirtd(lab_state.base_dir, lab2.name)
    stack.start_worker("worker")  # on start, the worker ends the jobs its previous life left running
    job = wait_for(lambda: job_done(job.pk), 30, message="the interrupted job to be ended")
    assert job.status == "failed" and job.error_code == "interrupted"
    assert job.error.startswith("interrupted: worker worker@") and "the VM is running" in job.error
    assert domstate(lab2, guest) == "running"


@pytest.fixture
def admin_user_e2e(e2e_user):
    return e2e_user
