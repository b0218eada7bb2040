"""Celery tasks of the job engine: thin wrappers over jobs.engine.

Every kind runs through one task, ``jobs.run``, sent to the kind's queue. acks_late +
reject_on_worker_lost (settings): a job whose worker dies is delivered again, and job_run then ends
it as interrupted instead of leaving it running for ever. Names are explicit, and the names tasks
had before the engine existed still run jobs, so messages queued by an older version are not lost.
"""

from celery import shared_task

from .engine import RUN_TASK, WAIT, job_run, jobs_reap
from .heartbeat import worker_alive, worker_name

LEGACY_RUN_TASKS = ("vms.tasks.job_run", "vms.tasks.migration_run", "hosts.tasks.host_maintenance_task")


def _run(task, job_id: int) -> None:
    if job_run(job_id, worker=worker_name(task.request.hostname)) == WAIT:
        raise task.retry(countdown=2)  # e.g. no free migration slot yet: ask again


run = shared_task(bind=True, name=RUN_TASK, ignore_result=True, max_retries=None)(_run)
_legacy = [shared_task(bind=True, name=name, ignore_result=True, max_retries=None)(_run) for name in LEGACY_RUN_TASKS]


@shared_task(name="jobs.reap", ignore_result=True)
def reap() -> None:
    """Periodic: end running jobs whose worker stopped heartbeating."""
    jobs_reap(worker_alive=worker_alive)


# the name beat used before the engine: a schedule file of an older version still finds it
reap_legacy = shared_task(name="vms.tasks.jobs_reap_task", ignore_result=True)(reap.run)
