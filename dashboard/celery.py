"""The Celery app: Redis broker, queues per kind of work, periodic tasks."""

import os

from celery import Celery
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

app = Celery("dashboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Each queue with its own routing key, so a message lands in exactly one queue on any broker.
_exchange = Exchange("virtfleet", type="direct")
app.conf.task_queues = [
    Queue(name, _exchange, routing_key=name) for name in ("lifecycle", "migration", "inventory", "storage")
]
app.conf.task_default_exchange = "virtfleet"
app.conf.task_default_routing_key = "lifecycle"
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _periodic(sender, **_kwargs):
    from django.conf import settings

    sender.conf.beat_schedule = {
        "resync-every-host": {
            "task": "hosts.tasks.host_resync_all_task",
            "schedule": float(settings.VIRTFLEET["RESYNC_INTERVAL"]),
        },
        "reap-interrupted-jobs": {"task": "jobs.reap", "schedule": 30.0},
        "prune-history": {"task": "dashboard.tasks.prune_history_task", "schedule": 24 * 3600.0},
        **getattr(settings, "VIRTFLEET_EXTRA_BEAT", {}),
    }
