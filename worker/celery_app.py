"""The Celery worker application: the service's queue configuration (``service.queue``) plus
the tasks in ``worker.tasks`` and a heartbeat that ``GET /readyz`` reads.

Start a worker with::

    celery -A worker.celery_app worker --queues mobileconv,mobileconv-webhooks

Concurrency is 1 (one conversion at a time per worker process, which already uses every core
it is given); add capacity by starting more workers, on this host or others.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from celery.signals import worker_ready, worker_shutdown

from service.queue import create_celery
from service.settings import get_settings

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10

settings = get_settings()
app = create_celery(settings)
app.conf.update(include=["worker.tasks"], worker_concurrency=1)

_stop = threading.Event()


def _heartbeat(hostname: str) -> None:
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
    key = f"{settings.key_prefix}:workers"
    while not _stop.is_set():
        try:
            client.zadd(key, {hostname: time.time()})
            client.zremrangebyscore(key, "-inf", time.time() - 3600)
        except redis.RedisError as exc:
            logger.warning("Worker %s could not write its heartbeat: %s", hostname, exc)
        _stop.wait(HEARTBEAT_SECONDS)
    try:
        client.zrem(key, hostname)
    except redis.RedisError:
        pass


@worker_ready.connect
def _start_heartbeat(sender: object = None, **_kwargs: object) -> None:
    hostname = getattr(sender, "hostname", None) or "worker"
    threading.Thread(target=_heartbeat, args=(hostname,), daemon=True, name="heartbeat").start()
    logger.info("Worker %s ready; heartbeat every %d s.", hostname, HEARTBEAT_SECONDS)


@worker_shutdown.connect
def _stop_heartbeat(**_kwargs: object) -> None:
    _stop.set()
