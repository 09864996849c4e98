"""A real mobileconv service for the service sections: gunicorn and Celery worker processes on
the local Redis, database 14 (only that database is flushed), as ``make run`` starts them.

Every process is started in its own session and stopped by its own process group id.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from bench.context import ROOT

if TYPE_CHECKING:
    from service.client import Client

logger = logging.getLogger(__name__)

REDIS_URL = "redis://127.0.0.1:6379/14"
QUEUE = "bench"


@dataclass
class Service:
    """A running API and its workers."""

    base_url: str
    env: dict[str, str]
    log_dir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def add_worker(self, index: int) -> None:
        """Start one more Celery worker process (concurrency 1, as the service runs it)."""
        command = [
            sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
            "--queues", f"{QUEUE},{QUEUE}-webhooks", "--concurrency", "1",
            "--hostname", f"bench{index}@%h", "--without-gossip", "--without-mingle",
            "--loglevel", "WARNING",
        ]  # fmt: skip
        self.processes.append(_spawn(command, self.env, self.log_dir / f"worker{index}.log"))

    def wait_ready(self, workers: int, timeout: float = 90) -> None:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if client.zcard("bench:workers") >= workers:
                return
            time.sleep(0.3)
        raise RuntimeError(f"{workers} worker(s) did not report within {timeout} s.")


def make_client(base_url: str) -> Client:
    """A service client whose session retries a request on a connection the server reset.

    gunicorn drops idle keep-alive connections after a few seconds and under overload, which
    the load windows cause; a retried GET or a re-sent POST on a fresh connection is harmless.
    """
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    from service.client import Client

    session = requests.Session()
    retry = Retry(total=5, connect=5, read=5, status=0, allowed_methods=None,
                  backoff_factor=0.2, raise_on_status=False)
    session.mount("http://", HTTPAdapter(max_retries=retry))
    return Client(base_url, session=session)


def _spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _flush() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


@contextmanager
def running(work: Path, workers: int = 1) -> Iterator[Service]:
    """Start the API (2 gunicorn workers, the default) and ``workers`` Celery workers."""
    _flush()
    data = work / "service"
    data.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOBILECONV_")}
    env.update(
        MOBILECONV_REDIS_URL=REDIS_URL,
        MOBILECONV_DATA_DIR=str(data),
        MOBILECONV_SECRET_KEY="bench-secret",
        MOBILECONV_KEY_PREFIX="bench",
        MOBILECONV_QUEUE_NAME=QUEUE,
        MOBILECONV_WEBHOOK_QUEUE_NAME=f"{QUEUE}-webhooks",
        MOBILECONV_LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    port = _free_port()
    service = Service(f"http://127.0.0.1:{port}", env, data)
    command = [sys.executable, "-m", "gunicorn", "-c", "service/gunicorn_conf.py",
               "--bind", f"127.0.0.1:{port}", "service.app:create_app()"]
    try:
        service.processes.append(_spawn(command, env, data / "api.log"))
        _await_http(service.base_url + "/healthz", 30)
        for index in range(workers):
            service.add_worker(index)
        service.wait_ready(workers)
        yield service
    finally:
        for process in service.processes:
            _stop(process)
        _flush()


def _await_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s.")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_terminal(
    client: Client, job_id: str, interval: float = 0.1, timeout: float = 1800
) -> tuple[dict[str, Any], float]:
    """Poll until the job ends; returns the job and the monotonic time it was seen ending."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(job_id)
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job, time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"Job {job_id} did not end within {timeout} s.")
        time.sleep(interval)
