"""The Celery app: Redis broker, queues per kind of work, periodic tasks."""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

app = Celery("dashboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue("lifecycle"), Queue("migration"), Queue("inventory")]
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _periodic(sender, **_kwargs):
    from django.conf import settings

    sender.conf.beat_schedule = {
        "resync-every-host": {
            "task": "hosts.tasks.host_resync_all_task",
            "schedule": float(settings.VIRTFLEET["RESYNC_INTERVAL"]),
        },
        "reap-interrupted-jobs": {"task": "vms.tasks.jobs_reap_task", "schedule": 30.0},
        **getattr(settings, "VIRTFLEET_EXTRA_BEAT", {}),
    }
