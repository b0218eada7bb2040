from celery import shared_task

from .retention import prune_history


@shared_task(name="dashboard.tasks.prune_history_task", ignore_result=True)
def prune_history_task() -> None:
    """Daily: delete history older than VIRTFLEET_JOB_RETENTION_DAYS / _AUDIT_RETENTION_DAYS."""
    prune_history()
