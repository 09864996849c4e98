"""End to end: the API under gunicorn, a real Celery worker, the real engine. One resnet18
conversion is shared by the download, URL and webhook tests; torch is imported only inside
the tests that load artifacts."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

from live import E2E_SECRET, SMALL_RECIPE, TERMINAL, Api, Receiver

from service import signing, webhooks
from service.schemas import Job


def _artifact(job: dict[str, Any], name: str) -> dict[str, Any]:
    return next(a for a in job["artifacts"] if a["name"] == name)


def test_resnet18_job_succeeds_with_report_and_artifacts(
    api: Api, succeeded_job: dict[str, Any]
) -> None:
    names = {a["name"] for a in succeeded_job["artifacts"]}
    assert {"model.pte", "model.ptl", "report.json"} <= names
    assert succeeded_job["progress"] == 1.0 and succeeded_job["stage"] == "done"
    report = api.get(f"/v1/jobs/{succeeded_job['id']}/report").json()
    assert {a["target"] for a in report["artifacts"]} == {"pte", "ptl"}


def test_artifacts_download_and_run_in_their_runtimes(
    api: Api, succeeded_job: dict[str, Any], tmp_path: Path
) -> None:
    import torch

    paths = {}
    for name in ("model.pte", "model.ptl"):
        artifact = _artifact(succeeded_job, name)
        response = api.get(artifact["url"])
        assert response.status_code == 200
        assert hashlib.sha256(response.content).hexdigest() == artifact["sha256"]
        paths[name] = tmp_path / name
        paths[name].write_bytes(response.content)

    x = torch.randn(*SMALL_RECIPE["input_shape"])
    from torch.jit.mobile import _load_for_lite_interpreter

    torch.backends.quantized.engine = "qnnpack"
    lite = _load_for_lite_interpreter(str(paths["model.ptl"]))
    assert tuple(lite(x).shape) == (1, 1000)

    from executorch.runtime import Runtime

    program = Runtime.get().load_program(paths["model.pte"])
    outputs = program.load_method("forward").execute((x,))
    assert tuple(outputs[0].shape) == (1, 1000)


def test_download_honours_range_and_etag(api: Api, succeeded_job: dict[str, Any]) -> None:
    artifact = _artifact(succeeded_job, "model.ptl")
    partial = api.get(artifact["url"], headers={"Range": "bytes=0-99"})
    assert partial.status_code == 206 and len(partial.content) == 100
    etag = api.get(artifact["url"]).headers["ETag"]
    assert api.get(artifact["url"], headers={"If-None-Match": etag}).status_code == 304


def test_tampered_and_expired_urls_are_403(api: Api, succeeded_job: dict[str, Any]) -> None:
    url = _artifact(succeeded_job, "model.pte")["url"]
    tampered = url.replace("model.pte", "model.ptl")
    assert api.get(tampered).status_code == 403
    assert api.get(url[:-4] + "0000").status_code == 403
    path, _ = signing.sign_path(E2E_SECRET.encode(), succeeded_job["id"], "model.pte", -60)
    expired = api.get(path)
    assert expired.status_code == 403 and "expired" in expired.json()["error"]["message"]


def test_webhook_is_delivered_signed(succeeded_job: dict[str, Any], receiver: Receiver) -> None:
    deadline = time.monotonic() + 30
    while not receiver.deliveries and time.monotonic() < deadline:
        time.sleep(0.2)
    headers, body = receiver.deliveries[0]
    assert webhooks.verify(
        E2E_SECRET.encode(), body, headers["X-Mobileconv-Timestamp"],
        headers["X-Mobileconv-Signature"],
    )  # fmt: skip
    job = Job.model_validate_json(body)
    assert job.id == succeeded_job["id"] and job.status == "succeeded"


def test_broken_model_fails_readably_and_idempotency_holds(api: Api) -> None:
    headers = {"Idempotency-Key": f"broken-{time.time()}"}
    first = api.submit(b"this is not a model" * 50, SMALL_RECIPE, headers)
    again = api.submit(b"this is not a model" * 50, SMALL_RECIPE, headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]

    job = api.wait(first.json()["id"], lambda j: j["status"] in TERMINAL, timeout=180)
    assert job["status"] == "failed"
    assert job["error"]["code"] not in ("internal", "worker-lost")
    assert len(job["error"]["message"]) > 20


def test_cancel_stops_a_running_conversion(api: Api, resnet18_file: Path) -> None:
    job_id = api.submit(resnet18_file, SMALL_RECIPE).json()["id"]
    api.wait(job_id, lambda j: j["status"] == "running", timeout=300)
    time.sleep(1.0)
    assert _conversion_processes(job_id), "the conversion process should be running"

    response = api.request("DELETE", f"/v1/jobs/{job_id}")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    deadline = time.monotonic() + 10
    while _conversion_processes(job_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _conversion_processes(job_id)
    assert api.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"


def test_ready_and_metrics_see_the_worker(api: Api, succeeded_job: dict[str, Any]) -> None:
    assert api.get("/readyz").json()["workers"]
    text = api.get("/metrics").text
    assert 'mobileconv_jobs_total{status="succeeded"}' in text
    assert 'mobileconv_stage_seconds_count{stage="loading"}' in text


def _conversion_processes(job_id: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"worker.child" in cmdline and job_id.encode() in cmdline:
            found.append(int(pid))
    return found


def test_client_cli_fetches_and_python_client_reads(
    api: Api, succeeded_job: dict[str, Any], tmp_path: Path, capsys: Any
) -> None:
    import argparse

    from service.client import ApiError, Client
    from service.client_cli import add_client_commands, run_client_command

    parser = argparse.ArgumentParser()
    add_client_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["fetch", succeeded_job["id"], "--out", str(tmp_path), "--url", api.base_url]
    )
    assert run_client_command(args) == 0
    assert (tmp_path / "model.pte").stat().st_size > 0
    assert "100%" in capsys.readouterr().err

    client = Client(api.base_url)
    assert client.report(succeeded_job["id"])["artifacts"]
    try:
        client.get("0" * 32)
    except ApiError as exc:
        assert exc.status == 404 and exc.code == "not-found"
    else:
        raise AssertionError("an unknown job should raise ApiError")
