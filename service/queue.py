"""The Celery application as both sides see it: the API only sends tasks by name and never
imports ``worker.tasks`` (which would pull in the worker's dependencies), the worker adds its
tasks to the same configuration in ``worker.celery_app``.
"""

from __future__ import annotations

from celery import Celery

from service.settings import Settings

CONVERT_TASK = "mobileconv.convert"
WEBHOOK_TASK = "mobileconv.webhook"

# The hard limit leaves the worker's own timeout (which kills the conversion process and fails
# the job with a clear message) time to act first.
_TIME_LIMIT_MARGIN_SECONDS = 300


def create_celery(settings: Settings) -> Celery:
    """Return a Celery app on the Redis broker with the service's delivery guarantees."""
    time_limit = settings.job_timeout_seconds + _TIME_LIMIT_MARGIN_SECONDS
    app = Celery("mobileconv", broker=settings.redis_url)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        task_time_limit=time_limit,
        task_default_queue=settings.queue_name,
        task_routes={
            CONVERT_TASK: {"queue": settings.queue_name},
            WEBHOOK_TASK: {"queue": settings.webhook_queue_name},
        },
        # An unacknowledged task goes back to the queue after this long; it must outlast the
        # longest job or a slow conversion would be delivered twice.
        broker_transport_options={"visibility_timeout": time_limit + 600},
        broker_connection_retry_on_startup=True,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


def enqueue_conversion(app: Celery, job_id: str) -> None:
    """Send the conversion task of ``job_id``; the task id is the job id."""
    app.send_task(CONVERT_TASK, args=[job_id], task_id=job_id)


def enqueue_webhook(app: Celery, job_id: str) -> None:
    """Send the webhook delivery of ``job_id``'s final document."""
    app.send_task(WEBHOOK_TASK, args=[job_id, 1])
