"""Worker liveness: each Celery worker keeps a heartbeat key in Redis while it runs.

A running job whose worker's key expired is ended by the reaper (jobs.engine.jobs_reap). When a
worker starts, jobs it was running in its previous life are ended at once.
"""

from __future__ import annotations

import logging
import os
import threading

import redis
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings

log = logging.getLogger(__name__)

HEARTBEAT_TTL = 30  # seconds without a heartbeat before a worker counts as dead
HEARTBEAT_EVERY = 5
_stop = threading.Event()


def worker_name(hostname: str | None) -> str:
    return hostname or f"worker@{os.uname().nodename}:{os.getpid()}"


def _key(name: str) -> str:
    return f"virtfleet:worker:{name}"


def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def worker_alive(name: str) -> bool:
    if not name:
        return False
    try:
        return bool(_client().exists(_key(name)))
    except redis.RedisError:
        return True  # cannot tell: never end a job on a Redis hiccup


def _beat(name: str) -> None:
    client = _client()
    while not _stop.is_set():
        try:
            client.set(_key(name), os.getpid(), ex=HEARTBEAT_TTL)
        except redis.RedisError as exc:
            log.warning("worker heartbeat failed: %s", exc)
        _stop.wait(HEARTBEAT_EVERY)
    try:
        client.delete(_key(name))
    except redis.RedisError:
        pass


@worker_ready.connect
def _on_worker_ready(sender=None, **_kwargs):
    name = worker_name(getattr(sender, "hostname", None))
    threading.Thread(target=_beat, args=(name,), name="virtfleet-heartbeat", daemon=True).start()
    from .engine import jobs_reap  # the engine imports the apps' models: not before Django is ready

    ended = jobs_reap(worker_alive=worker_alive, dead_worker=name)
    if ended:
        log.warning("ended %d job(s) interrupted by a previous worker: %s", len(ended), [j.pk for j in ended])


@worker_shutdown.connect
def _on_worker_shutdown(**_kwargs):
    _stop.set()
