"""A small Python client for the mobileconv API (requests only, no torch)::

from service.client import Client

client = Client("http://127.0.0.1:8000")
recipe = {"architecture": "resnet18", "input_shape": [1, 3, 224, 224]}
job = client.submit("resnet18.pt", recipe)
job = client.wait(job["id"], on_progress=lambda j: print(j["stage"], j["progress"]))
paths = client.download(job, "out/")
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


class ApiError(Exception):
    """An error answer from the API, with its stable code, message and HTTP status."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{message} ({code}, HTTP {status})")
        self.status = status
        self.code = code
        self.message = message
        self.field = field


class Client:
    """Talks to one mobileconv API.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000``.
        timeout: seconds per HTTP request (default 300, uploads included).
        session: a ``requests.Session`` to reuse (one is created when omitted).
    """

    def __init__(
        self, base_url: str, *, timeout: float = 300, session: requests.Session | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = path if path.startswith("http") else self.base_url + path
        response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                error = {"code": "http-error", "message": response.text[:500] or response.reason}
            raise ApiError(
                response.status_code, error["code"], error["message"], error.get("field")
            )
        return response

    def submit(
        self,
        model: str | Path,
        recipe: dict[str, Any],
        *,
        calibration: str | Path | None = None,
        evaluation: str | Path | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Upload a model with its recipe and return the queued job document."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        handles = {"model": Path(model).open("rb")}
        for name, path in (("calibration", calibration), ("evaluation", evaluation)):
            if path is not None:
                handles[name] = Path(path).open("rb")
        try:
            files: dict[str, Any] = {
                name: (Path(handle.name).name, handle) for name, handle in handles.items()
            }
            files["recipe"] = (None, json.dumps(recipe), "application/json")
            return self._call("POST", "/v1/jobs", files=files, headers=headers).json()
        finally:
            for handle in handles.values():
                handle.close()

    def get(self, job_id: str) -> dict[str, Any]:
        """Return the job document."""
        return self._call("GET", f"/v1/jobs/{job_id}").json()

    def list(self, status: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Return the newest jobs (one page)."""
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        return self._call("GET", "/v1/jobs", params=params).json()["jobs"]

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job."""
        return self._call("DELETE", f"/v1/jobs/{job_id}").json()

    def report(self, job_id: str) -> dict[str, Any]:
        """Return a succeeded job's report."""
        return self._call("GET", f"/v1/jobs/{job_id}/report").json()

    def wait(
        self,
        job_id: str,
        *,
        timeout: float = 3600,
        interval: float = 1.0,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the job ends and return its final document.

        Raises:
            TimeoutError: the job did not end within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if on_progress is not None:
                on_progress(job)
            if job["status"] in TERMINAL:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"Job {job_id} did not finish within {timeout} s.")
            time.sleep(interval)

    def download(
        self, job: dict[str, Any], dest: str | Path, names: list[str] | None = None
    ) -> list[Path]:
        """Download a succeeded job's artifacts (all, or ``names``) into ``dest``."""
        directory = Path(dest)
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for artifact in job["artifacts"]:
            if names is not None and artifact["name"] not in names:
                continue
            path = directory / Path(artifact["name"]).name
            with self._call("GET", artifact["url"], stream=True) as response:
                with path.open("wb") as handle:
                    for chunk in response.iter_content(1 << 20):
                        handle.write(chunk)
            paths.append(path)
        return paths
