"""The Celery worker application: the service's queue configuration (``service.queue``) plus
the tasks in ``worker.tasks`` and a heartbeat that ``GET /readyz`` reads.

Start a worker with::

    celery -A worker.celery_app worker --queues mobileconv,mobileconv-webhooks

Concurrency is 1 (one conversion at a time per worker process, which already uses every core
it is given); add capacity by starting more workers, on this host or others.

Worker loss. Each worker process has an identity (``node:pid``) that it writes to
``{prefix}:workers`` every third of ``MOBILECONV_WORKER_LOST_SECONDS`` and puts on the jobs it
runs. The same thread sweeps ``{prefix}:running``: a job whose worker has been silent longer
than that is handed back to the queue (or failed after ``MOBILECONV_MAX_ATTEMPTS`` starts), so
a killed worker's job runs again within about a minute. Celery's own redelivery covers the
other half: a pool process that dies mid-task has its message requeued at once
(``task_reject_on_worker_lost``), and an unacknowledged message of a vanished worker comes
back after the visibility timeout, by which time the sweep has long settled the job.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

import redis
from celery.signals import celeryd_init, worker_ready, worker_shutdown

from service.errors import NotFound
from service.jobs import JobStore
from service.queue import create_celery, enqueue_conversion
from service.schemas import JobStatus
from service.settings import get_settings

logger = logging.getLogger(__name__)

settings = get_settings()
app = create_celery(settings)
app.conf.update(include=["worker.tasks"], worker_concurrency=1)

HEARTBEAT_SECONDS = settings.worker_lost_seconds / 3

_stop = threading.Event()
_identity = {"id": f"{socket.gethostname()}:{os.getpid()}"}


def worker_id() -> str:
    """Return this worker's identity, ``node:pid`` of its main process (pool processes forked
    from it inherit the value)."""
    return _identity["id"]


@celeryd_init.connect
def _name_worker(sender: object = None, **_kwargs: object) -> None:
    _identity["id"] = f"{sender or socket.gethostname()}:{os.getpid()}"


def live_workers(client: redis.Redis) -> set[str]:
    """Return the identities of workers that sent a heartbeat within the lost-worker time."""
    since = time.time() - settings.worker_lost_seconds
    members = client.zrangebyscore(f"{settings.key_prefix}:workers", since, "+inf")
    return {m.decode() if isinstance(m, bytes) else str(m) for m in members}


def sweep_lost_jobs(jobs: JobStore, me: str) -> int:
    """Hand back running jobs whose worker went silent; return how many were sent again."""
    alive = live_workers(jobs.redis) | {me}
    sent = 0
    for job_id in jobs.running_jobs():
        try:
            record = jobs.get(job_id)
        except NotFound:
            record = None
        if record is None or record.status != JobStatus.RUNNING:
            jobs.forget_running(job_id)
            continue
        holder = record.worker
        if holder in alive:
            continue
        if jobs.requeue_lost(job_id, settings.max_attempts, holder):
            enqueue_conversion(app, job_id)
            sent += 1
            logger.warning("Job %s: worker %s is silent; sent the job again.", job_id, holder)
    return sent


def _heartbeat(me: str) -> None:
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
    jobs = JobStore(client, settings)
    key = f"{settings.key_prefix}:workers"
    # After losing Redis, every worker's heartbeat looks stale; sweeping only once this
    # worker has itself been connected for a whole lost-worker period gives the others time
    # to beat again before any of their jobs is taken from them.
    connected_since = time.monotonic()
    while not _stop.is_set():
        try:
            client.zadd(key, {me: time.time()})
            client.zremrangebyscore(key, "-inf", time.time() - 3600)
            if time.monotonic() - connected_since >= settings.worker_lost_seconds:
                sweep_lost_jobs(jobs, me)
        except redis.RedisError as exc:
            connected_since = time.monotonic()
            logger.warning("Worker %s could not write its heartbeat: %s", me, exc)
        _stop.wait(HEARTBEAT_SECONDS)
    try:
        client.zrem(key, me)
    except redis.RedisError:
        pass


@worker_ready.connect
def _start_heartbeat(sender: object = None, **_kwargs: object) -> None:
    me = worker_id()
    threading.Thread(target=_heartbeat, args=(me,), daemon=True, name="heartbeat").start()
    logger.info("Worker %s ready; heartbeat every %.1f s.", me, HEARTBEAT_SECONDS)


@worker_shutdown.connect
def _stop_heartbeat(**_kwargs: object) -> None:
    _stop.set()
