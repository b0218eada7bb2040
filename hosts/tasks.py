"""Celery tasks for hosts: thin wrappers over the host services (queue: inventory)."""

from celery import shared_task

from .models import Host
from .services import host_sync


@shared_task(name="hosts.tasks.host_sync_task", ignore_result=True)
def host_sync_task(host_id: int) -> None:
    """Resync one host's inventory (after it was added, or on request)."""
    host = Host.objects.filter(pk=host_id).first()
    if host is not None:
        host_sync(host=host)


@shared_task(name="hosts.tasks.host_resync_all_task", ignore_result=True)
def host_resync_all_task() -> None:
    """The periodic safety net: fan out one sync per host so slow hosts do not hold up the rest."""
    for host_id in Host.objects.values_list("pk", flat=True):
        host_sync_task.apply_async(args=[host_id], queue="inventory")
