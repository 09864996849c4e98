"""Session fixtures for end-to-end tests: the API under gunicorn and one Celery worker, both
real subprocesses on the real Redis (db 15), a local webhook receiver, and one resnet18 job
that the download, URL and webhook tests share (a conversion costs about a minute)."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
E2E_SECRET = "e2e-secret-key"
E2E_PREFIX = "e2e"
TERMINAL = {"succeeded", "failed", "cancelled"}
SMALL_RECIPE: dict[str, Any] = {
    "architecture": "resnet18",
    "input_shape": [1, 3, 64, 64],
    "targets": ["pte", "ptl"],
    "quantization": {"mode": "static", "calibration_samples": 8},
    "benchmark": {"runs": 3, "warmup": 1, "eval_samples": 8},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass
class Api:
    """A requests session on the live server; every response is checked against the
    contract."""

    base_url: str
    session: requests.Session
    log_dir: Path

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.base_url + path

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 60)
        return self.session.request(method, self.url(path), **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def wait(
        self, job_id: str, until: Callable[[dict[str, Any]], bool], timeout: float = 600
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(f"/v1/jobs/{job_id}").json()
            if until(job):
                return job
            if time.monotonic() > deadline:
                logs = (self.log_dir / "worker.log").read_text(errors="replace")[-3000:]
                raise AssertionError(f"Job {job_id} stuck at {job}; worker log:\n{logs}")
            time.sleep(0.5)

    def submit(
        self, model: bytes | Path, recipe: dict[str, Any], headers: dict[str, str] | None = None
    ) -> requests.Response:
        body = model.read_bytes() if isinstance(model, Path) else model
        import json

        files = {"model": ("model.pt", body), "recipe": (None, json.dumps(recipe))}
        return self.request("POST", "/v1/jobs", files=files, headers=headers or {})


@dataclass
class Receiver:
    """A local webhook receiver that records every delivery."""

    url: str
    deliveries: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture(scope="session")
def live_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("live")


@pytest.fixture(scope="session")
def live_env(live_dir: Path, redis_client: Any) -> dict[str, str]:
    from conftest import REDIS_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith("MOBILECONV_")}
    env.update(
        MOBILECONV_REDIS_URL=REDIS_URL,
        MOBILECONV_DATA_DIR=str(live_dir / "var"),
        MOBILECONV_SECRET_KEY=E2E_SECRET,
        MOBILECONV_KEY_PREFIX=E2E_PREFIX,
        MOBILECONV_QUEUE_NAME="e2e",
        MOBILECONV_WEBHOOK_QUEUE_NAME="e2e-webhooks",
        MOBILECONV_ALLOW_PRIVATE_CALLBACKS="true",
        MOBILECONV_CANCEL_POLL_SECONDS="0.3",
        MOBILECONV_WEBHOOK_BACKOFF_SECONDS="0.5",
        MOBILECONV_MAX_UPLOAD_BYTES=str(200 * 1024**2),
        PYTHONPATH=str(ROOT),
    )
    return env


@pytest.fixture(scope="session")
def live_server(live_env: dict[str, str], live_dir: Path) -> Iterator[str]:
    port = free_port()
    log = (live_dir / "api.log").open("wb")
    command = [
        sys.executable, "-m", "gunicorn", "-c", "service/gunicorn_conf.py",
        "--bind", f"127.0.0.1:{port}", "--workers", "1", "service.app:create_app()",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=ROOT, env=live_env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    _await(lambda: requests.get(base + "/healthz", timeout=1).ok, 30, process, "API")
    yield base
    _stop(process)


@pytest.fixture(scope="session")
def live_worker(live_env: dict[str, str], live_dir: Path, live_server: str) -> Iterator[None]:
    log = (live_dir / "worker.log").open("wb")
    command = [
        sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
        "--queues", "e2e,e2e-webhooks", "--concurrency", "1", "--hostname", "e2e@%h",
        "--without-gossip", "--without-mingle", "--loglevel", "INFO",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=ROOT, env=live_env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    _await(lambda: requests.get(live_server + "/readyz", timeout=2).ok, 60, process, "worker")
    yield
    _stop(process)


def _await(check: Callable[[], bool], timeout: float, process: Any, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"The {what} process exited with {process.returncode}.")
        try:
            if check():
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"The {what} did not become ready within {timeout} s.")


@pytest.fixture(scope="session")
def api(live_server: str, live_worker: None, contract: Any, live_dir: Path) -> Api:
    session = requests.Session()
    session.hooks["response"].append(lambda response, **_: contract.check_requests(response))
    return Api(live_server, session, live_dir)


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    port = free_port()
    found = Receiver(url=f"http://127.0.0.1:{port}/hook")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            found.deliveries.append((dict(self.headers.items()), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield found
    server.shutdown()


@pytest.fixture(scope="session")
def resnet18_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    import torchvision

    path = tmp_path_factory.mktemp("models") / "resnet18.pt"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


@pytest.fixture(scope="session")
def succeeded_job(api: Api, resnet18_file: Path, receiver: Receiver) -> dict[str, Any]:
    recipe = {**SMALL_RECIPE, "callback_url": receiver.url}
    response = api.submit(resnet18_file, recipe)
    assert response.status_code == 202, response.text
    job = api.wait(response.json()["id"], lambda j: j["status"] in TERMINAL)
    assert job["status"] == "succeeded", job["error"]
    return job
