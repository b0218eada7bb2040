"""Celery tasks for VMs: thin wrappers over vms.jobs.

acks_late + reject_on_worker_lost (settings): a job whose worker dies is delivered again, and
job_execute then ends it as interrupted instead of leaving it running forever.
"""

from celery import shared_task

from . import jobs
from .worker import worker_name


@shared_task(bind=True, ignore_result=True)
def job_run(self, job_id: int) -> None:
    """Run one lifecycle job (queue: lifecycle)."""
    jobs.job_execute(job_id, worker=worker_name(self.request.hostname))


@shared_task(ignore_result=True)
def jobs_reap_task() -> None:
    """Periodic: end running jobs whose worker stopped heartbeating."""
    from .worker import worker_alive

    jobs.jobs_reap(worker_alive=worker_alive)


@shared_task(bind=True, ignore_result=True, max_retries=None)
def migration_run(self, job_id: int) -> None:
    """Run one migration (queue: migration); while both hosts' slots are taken, ask again in 2 s."""
    from .migration import WAIT, migration_execute

    if migration_execute(job_id, worker=worker_name(self.request.hostname)) == WAIT:
        raise self.retry(countdown=2)
