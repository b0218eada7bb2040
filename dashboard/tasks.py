from celery import shared_task


@shared_task(ignore_result=True)
def prune_history_task() -> None:
    """Daily: delete history older than VIRTFLEET_JOB_RETENTION_DAYS / _AUDIT_RETENTION_DAYS."""
    from dashboard.retention import prune_history

    prune_history()
