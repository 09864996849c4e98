"""The API through the Flask test client (no worker): bad input is a 4xx JSON error naming the
part or field, never a 500; idempotency; listing; operations endpoints. Every response is
checked against openapi.yaml by the ``client`` fixture."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

RECIPE = {"architecture": "resnet18", "input_shape": [1, 3, 32, 32]}


def _form(recipe: Any = RECIPE, model: bytes = b"model-bytes", **extra: Any) -> dict[str, Any]:
    form: dict[str, Any] = {"model": (io.BytesIO(model), "model.pt")}
    if recipe is not None:
        form["recipe"] = recipe if isinstance(recipe, str) else json.dumps(recipe)
    form.update(extra)
    return form


def test_submit_answers_202_with_location(client: Any) -> None:
    response = client.post("/v1/jobs", data=_form())
    assert response.status_code == 202
    job = response.get_json()
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and response.headers["Retry-After"]
    assert client.get(f"/v1/jobs/{job['id']}").get_json()["id"] == job["id"]


def test_recipe_may_be_a_file_part(client: Any) -> None:
    form = _form(recipe=None, recipe_file=None)
    form.pop("recipe_file")
    form["recipe"] = (io.BytesIO(json.dumps(RECIPE).encode()), "recipe.json")
    assert client.post("/v1/jobs", data=form).status_code == 202


@pytest.mark.parametrize(
    ("form", "status", "code", "field"),
    [
        ({"recipe": json.dumps(RECIPE)}, 400, "missing-part", "model"),
        (_form(recipe=None), 400, "missing-part", "recipe"),
        (_form(recipe="{not json"), 422, "invalid-recipe", "recipe"),
        (_form(recipe="[1, 2]"), 422, "invalid-recipe", "recipe"),
        (
            _form(recipe={**RECIPE, "input_shape": "big"}),
            422,
            "invalid-recipe",
            "recipe.input_shape",
        ),
        (_form(recipe={**RECIPE, "colour": "red"}), 422, "invalid-recipe", "recipe.colour"),
        (
            _form(recipe={**RECIPE, "quantization": {"mode": "int4"}}),
            422,
            "invalid-recipe",
            "recipe.quantization.mode",
        ),
        (
            _form(recipe={**RECIPE, "targets": ["pte", "pte"]}),
            422,
            "invalid-recipe",
            "recipe.targets",
        ),
        (_form(model=b""), 400, "bad-request", "model"),
        (_form(extra="x"), 400, "bad-request", "extra"),
    ],
)
def test_bad_submissions_are_4xx_naming_the_field(
    client: Any, form: dict[str, Any], status: int, code: str, field: str
) -> None:
    response = client.post("/v1/jobs", data=form)
    assert response.status_code == status
    error = response.get_json()["error"]
    assert (error["code"], error["field"]) == (code, field)
    assert error["message"].endswith(".")


def test_not_multipart_is_400(client: Any) -> None:
    response = client.post("/v1/jobs", json=RECIPE)
    assert response.status_code == 400
    assert "multipart" in response.get_json()["error"]["message"]


def test_upload_over_limit_is_413_naming_the_limit(client: Any, settings: Any) -> None:
    response = client.post("/v1/jobs", data=_form(model=b"x" * (settings.max_upload_bytes + 1)))
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert error["code"] == "payload-too-large"
    assert str(settings.max_upload_bytes) in error["message"]


def test_unknown_job_route_and_method(client: Any) -> None:
    assert client.get("/v1/jobs/" + "0" * 32).status_code == 404
    assert client.get("/v1/jobs/not-an-id/report").status_code == 404
    assert client.get("/v1/nothing").get_json()["error"]["code"] == "not-found"
    response = client.put("/v1/jobs")
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method-not-allowed"


def test_idempotency_key_replays_or_conflicts(client: Any) -> None:
    headers = {"Idempotency-Key": "abc-123"}
    first = client.post("/v1/jobs", data=_form(), headers=headers)
    again = client.post("/v1/jobs", data=_form(), headers=headers)
    assert first.get_json()["id"] == again.get_json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    other = client.post("/v1/jobs", data=_form(model=b"other"), headers=headers)
    assert other.status_code == 422
    assert other.get_json()["error"]["code"] == "idempotency-conflict"


def test_list_filters_and_paginates(client: Any) -> None:
    ids = [client.post("/v1/jobs", data=_form()).get_json()["id"] for _ in range(3)]
    assert client.delete(f"/v1/jobs/{ids[0]}").get_json()["status"] == "cancelled"
    page = client.get("/v1/jobs?limit=2").get_json()
    assert [j["id"] for j in page["jobs"]] == ids[:0:-1] and page["next_cursor"]
    rest = client.get(f"/v1/jobs?limit=2&cursor={page['next_cursor']}").get_json()
    assert [j["id"] for j in rest["jobs"]] == [ids[0]] and rest["next_cursor"] is None
    cancelled = client.get("/v1/jobs?status=cancelled").get_json()["jobs"]
    assert [j["id"] for j in cancelled] == [ids[0]]
    assert client.get("/v1/jobs?status=lost").status_code == 400
    assert client.get("/v1/jobs?limit=0").status_code == 400


def test_cancel_twice_is_409_and_report_before_success_is_404(client: Any) -> None:
    job_id = client.post("/v1/jobs", data=_form()).get_json()["id"]
    assert client.get(f"/v1/jobs/{job_id}/report").status_code == 404
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 200
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 409


def test_operations_endpoints(client: Any) -> None:
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.headers["Retry-After"]
    client.post("/v1/jobs", data=_form())
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'mobileconv_jobs_active{status="queued"} 1' in metrics
    assert 'mobileconv_queue_depth{queue="unit-tests"}' in metrics
    assert client.get("/openapi.yaml").get_data(as_text=True).startswith("openapi: 3.1")
    assert "/v1/jobs" in client.get("/docs").get_data(as_text=True)


def test_redis_outage_is_503_with_retry_after(settings: Any, contract: Any) -> None:
    from conftest import CheckedClient

    from service.app import create_app

    down = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    client = CheckedClient(create_app(down).test_client(), contract)
    for response in (client.get("/v1/jobs"), client.post("/v1/jobs", data=_form())):
        assert response.status_code == 503 and response.headers["Retry-After"]
        assert response.get_json()["error"]["code"] == "unavailable"
    assert client.get("/healthz").status_code == 200
