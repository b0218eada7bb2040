"""The one way work reaches a Celery worker: by task name, once the current transaction commits.

Services never import the tasks they start (that made import circles): they name them. A task is
looked up in the Celery app's registry, so ``CELERY_TASK_ALWAYS_EAGER`` (tests) runs it inline and
a worker process runs it everywhere else.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import current_app
from django.db import transaction

log = logging.getLogger(__name__)


def enqueue(task: str, *, args: list, queue: str | None = None, task_id: str | None = None) -> None:
    """Send ``task`` (its registered name) now."""
    options: dict[str, Any] = {}
    if task_id:
        options["task_id"] = task_id
    if queue:
        options["queue"] = queue
    current_app.tasks[task].apply_async(args=tuple(args), **options)


def enqueue_on_commit(task: str, *, args: list, queue: str | None = None, task_id: str | None = None,
                      quiet: bool = False) -> None:  # fmt: skip
    """Send ``task`` once the current transaction commits (at once outside one).

    ``quiet``: a broker that is down is logged, not raised (work that something else will redo,
    such as a resync the listener runs anyway).
    """

    def send() -> None:
        try:
            enqueue(task, args=args, queue=queue, task_id=task_id)
        except Exception as exc:
            if not quiet:
                raise
            log.warning("could not queue %s%s: %s", task, tuple(args), exc)

    transaction.on_commit(send)
