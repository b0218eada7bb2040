"""Celery tasks for hosts: thin wrappers over the host services."""

from celery import shared_task

from .models import Host


@shared_task(ignore_result=True)
def host_sync_task(host_id: int) -> None:
    """Resync one host's inventory (after it was added, or on request)."""
    from .services import host_sync

    host = Host.objects.filter(pk=host_id).first()
    if host is not None:
        host_sync(host=host)


@shared_task(ignore_result=True)
def host_resync_all_task() -> None:
    """The periodic safety net: fan out one sync per host so slow hosts do not hold up the rest."""
    for host_id in Host.objects.values_list("pk", flat=True):
        host_sync_task.delay(host_id)


@shared_task(bind=True, ignore_result=True)
def host_maintenance_task(self, job_id: int) -> None:
    """Evacuate a host entering maintenance (queue: lifecycle; it mostly waits for migrations)."""
    from vms.worker import worker_name

    from .maintenance import host_maintenance_run

    host_maintenance_run(job_id, worker=worker_name(self.request.hostname))
