"""Fixtures for the reliability suite: a private Redis, the API under gunicorn and a Celery
worker, all real processes this suite starts, stops, kills and restarts, plus the small
models (well-behaved and hostile) it sends them.

Nothing here touches the machine's own Redis: :class:`RedisServer` runs ``redis-server`` on a
free port in a temporary directory. Every scenario records what it measured in
:data:`RESULTS`, which ``docs/RELIABILITY.md`` is filled from.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from service.auth import hash_key

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "var" / "reliability" / "results.json"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
KEY_A = "reliability-key-alpha-0123456789"
KEY_B = "reliability-key-bravo-9876543210"
PREFIX = "rel"
QUEUE = "rel-convert"
TERMINAL = {"succeeded", "failed", "cancelled"}
GIB = 1024**3
MIB = 1024**2
# Limits of the worker under test: low enough for the hostile models below to reach them in
# seconds, high enough for LIGHT_RECIPE on the tiny model (about 15 s of CPU, 3.3 GiB of
# address space once torch and ExecuTorch are imported, artifacts of a few KiB).
CHILD_MEMORY_BYTES = 6 * GIB
CHILD_CPU_SECONDS = 25
CHILD_FILE_BYTES = 4 * MIB
WORKER_LOST_SECONDS = 3
# The cheapest real conversion: float ExecuTorch only, a few benchmark runs.
LIGHT_RECIPE: dict[str, Any] = {
    "targets": ["pte"],
    "quantization": {"mode": "none"},
    "benchmark": {"runs": 3, "warmup": 1, "eval_samples": 8},
}


def _load_contract() -> Any:
    path = ROOT / "tests" / "service" / "contract.py"
    module = sys.modules.get("contract")
    if module is None:
        spec = importlib.util.spec_from_file_location("contract", path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules["contract"] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.Contract()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> float:
    """Poll ``check`` until it is true; return the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if check():
                return time.monotonic() - start
        except (requests.RequestException, redis.RedisError):
            pass
        time.sleep(interval)
    raise AssertionError(f"{what} did not happen within {timeout} s.")


def _spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _end(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


@dataclass
class RedisServer:
    """A redis-server of this suite's own, with an append-only file so a restart keeps
    the jobs."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [
            REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.directory), "--save", "", "--appendonly", "yes",
        ]  # fmt: skip
        self.process = _spawn(command, dict(os.environ), self.directory / "redis.log")
        client = redis.Redis.from_url(self.url)
        wait_for(lambda: bool(client.ping()), 10, "redis-server start")

    def stop(self) -> None:
        _end(self.process)
        self.process = None


class Client:
    """A requests session on one API, with an API key, checking every response against
    openapi.yaml."""

    def __init__(self, base_url: str, contract: Any, key: str | None) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.trust_env = False
        if key is not None:
            self.session.headers["Authorization"] = f"Bearer {key}"
        self.session.hooks["response"].append(
            lambda response, **_: contract.check_requests(response)
        )

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        url = path if path.startswith("http") else self.base_url + path
        return self.session.request(method, url, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def submit(
        self,
        model: bytes | Path,
        recipe: dict[str, Any] | str,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        body = model.read_bytes() if isinstance(model, Path) else model
        text = recipe if isinstance(recipe, str) else json.dumps(recipe)
        files = {"model": ("model.pt2", body), "recipe": (None, text)}
        return self.request("POST", "/v1/jobs", files=files, headers=headers or {})

    def submit_ok(self, model: bytes | Path, recipe: dict[str, Any]) -> str:
        response = self.submit(model, recipe)
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait(
        self,
        job_id: str,
        until: Callable[[dict[str, Any]], bool] = lambda job: job["status"] in TERMINAL,
        timeout: float = 180,
    ) -> dict[str, Any]:
        found: dict[str, Any] = {}

        def check() -> bool:
            found.update(self.job(job_id))
            return until(found)

        wait_for(check, timeout, f"job {job_id} reaching the expected state", interval=0.3)
        return found


@dataclass
class Stack:
    """Redis, the API and one worker; the worker is started, killed and restarted by tests."""

    root: Path
    redis: RedisServer
    env: dict[str, str]
    api_url: str = ""
    api: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None
    contract: Any = None

    @property
    def store(self) -> Path:
        return self.root / "var" / "store"

    @property
    def worker_tmp(self) -> Path:
        return self.root / "worker-tmp"

    def client(self, key: str | None = KEY_A, base_url: str | None = None) -> Client:
        return Client(base_url or self.api_url, self.contract, key)

    def start_api(self, extra: dict[str, str] | None = None, name: str = "api") -> tuple:
        port = free_port()
        command = [
            sys.executable, "-m", "gunicorn", "-c", "service/gunicorn_conf.py",
            "--bind", f"127.0.0.1:{port}", "--workers", "1", "service.app:create_app()",
        ]  # fmt: skip
        process = _spawn(command, {**self.env, **(extra or {})}, self.root / f"{name}.log")
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: requests.get(url + "/healthz", timeout=1).ok, 30, f"{name} start")
        return process, url

    def start_worker(self) -> float:
        """Start the worker; return the seconds until it sent its first heartbeat."""
        self.worker_tmp.mkdir(exist_ok=True)
        command = [
            sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
            "--queues", f"{QUEUE},{QUEUE}-webhooks", "--concurrency", "1",
            "--hostname", "rel@%h", "--without-gossip", "--without-mingle",
            "--without-heartbeat", "--loglevel", "INFO",
        ]  # fmt: skip
        env = {**self.env, "TMPDIR": str(self.worker_tmp)}
        self.worker = _spawn(command, env, self.root / "worker.log")
        client = redis.Redis.from_url(self.redis.url)
        pid = self.worker.pid
        return wait_for(
            lambda: any(
                m.endswith(f":{pid}".encode()) for m in client.zrange(f"{PREFIX}:workers", 0, -1)
            ),
            60,
            "worker heartbeat",
        )

    def worker_pool_pids(self) -> list[int]:
        """The worker's pool processes (children of its main process)."""
        assert self.worker is not None
        path = Path(f"/proc/{self.worker.pid}/task/{self.worker.pid}/children")
        return [int(p) for p in path.read_text().split()] if path.exists() else []

    def signal_worker(self, sig: int, *, group: bool) -> None:
        assert self.worker is not None
        if group:
            os.killpg(self.worker.pid, sig)
        else:
            os.kill(self.worker.pid, sig)

    def wait_worker_exit(self, timeout: float) -> int:
        assert self.worker is not None
        code = self.worker.wait(timeout=timeout)
        self.worker = None
        return code

    def log_tail(self, name: str = "worker", chars: int = 4000) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def artifact_files(self, job_id: str) -> list[Path]:
        folder = self.store / "jobs" / job_id / "artifacts"
        return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []

    def stop(self) -> None:
        _end(self.worker)
        _end(self.api)
        self.redis.stop()


def stack_env(root: Path, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOBILECONV_")}
    env.update(
        MOBILECONV_REDIS_URL=redis_url,
        MOBILECONV_DATA_DIR=str(root / "var"),
        MOBILECONV_SECRET_KEY="reliability-secret",
        MOBILECONV_KEY_PREFIX=PREFIX,
        MOBILECONV_QUEUE_NAME=QUEUE,
        MOBILECONV_WEBHOOK_QUEUE_NAME=f"{QUEUE}-webhooks",
        MOBILECONV_API_KEY_HASHES=f"{hash_key(KEY_A)},{hash_key(KEY_B)}",
        MOBILECONV_MAX_UPLOAD_BYTES=str(32 * MIB),
        MOBILECONV_CHILD_MEMORY_BYTES=str(CHILD_MEMORY_BYTES),
        MOBILECONV_CHILD_CPU_SECONDS=str(CHILD_CPU_SECONDS),
        MOBILECONV_CHILD_FILE_BYTES=str(CHILD_FILE_BYTES),
        MOBILECONV_JOB_TIMEOUT_SECONDS="240",
        MOBILECONV_MAX_ATTEMPTS="3",
        MOBILECONV_WORKER_LOST_SECONDS=str(WORKER_LOST_SECONDS),
        MOBILECONV_CANCEL_POLL_SECONDS="0.3",
        MOBILECONV_RETRY_AFTER_SECONDS="3",
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(ROOT),
    )
    return env


@pytest.fixture(scope="session")
def results() -> Iterator[dict[str, Any]]:
    """Numbers each scenario measured; written to var/reliability/results.json at the end."""
    found: dict[str, Any] = {}
    started = time.monotonic()
    yield found
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    document = {
        "run": {
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": commit,
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "suite_seconds": round(time.monotonic() - started, 1),
        },
        "scenarios": found,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The private Redis, the API and one worker, started once for the session."""
    if not Path(REDIS_SERVER).exists():
        pytest.skip("The reliability suite starts its own redis-server; install redis-server.")
    root = tmp_path_factory.mktemp("reliability")
    server = RedisServer(root / "redis")
    server.start()
    built = Stack(root=root, redis=server, env=stack_env(root, server.url))
    built.contract = _load_contract()
    try:
        built.api, built.api_url = built.start_api()
        built.start_worker()
        yield built
    finally:
        built.stop()


@pytest.fixture(scope="session")
def front(stack: Stack) -> Iterator[Client]:
    """A second API on the same Redis whose conversion queue no worker serves: for tests
    that submit many jobs (keys, limits, fuzzing) without making the worker run them."""
    extra = {
        "MOBILECONV_QUEUE_NAME": "rel-unserved",
        "MOBILECONV_MAX_UPLOAD_BYTES": str(MIB),
    }
    process, url = stack.start_api(extra, name="front")
    try:
        yield stack.client(KEY_A, base_url=url)
    finally:
        _end(process)


# -- models ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny well-behaved model and the models built to hit each sandbox limit."""
    from tests.reliability import hostile

    return hostile.build_models(tmp_path_factory.mktemp("models"))
