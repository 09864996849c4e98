"""API keys against the real API: required everywhere but health, the contract, docs and
signed downloads; each key sees only its own jobs; compared in constant time; off by default
and on in docker-compose."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

import pytest
import yaml

from service import auth
from service.app import create_app
from service.settings import Settings
from tests.reliability.conftest import KEY_A, KEY_B, LIGHT_RECIPE, ROOT, Client, Stack

OPEN_PATHS = ["/healthz", "/readyz", "/openapi.yaml", "/docs"]
KEYED_PATHS = ["/v1/jobs", "/v1/jobs/" + "0" * 32, "/v1/jobs/" + "0" * 32 + "/report", "/metrics"]


@pytest.mark.parametrize("key", [None, "not-a-key"], ids=["no-key", "wrong-key"])
@pytest.mark.parametrize("path", KEYED_PATHS)
def test_keyed_endpoints_refuse_without_a_valid_key(
    stack: Stack, front: Client, path: str, key: str | None
) -> None:
    response = stack.client(key, base_url=front.base_url).get(path)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"]["field"] == "Authorization"


@pytest.mark.parametrize("path", OPEN_PATHS)
def test_health_and_docs_need_no_key(stack: Stack, front: Client, path: str) -> None:
    response = stack.client(None, base_url=front.base_url).get(path)
    assert response.status_code in (200, 503) and response.status_code != 401


def test_each_key_sees_only_its_own_jobs(
    stack: Stack, front: Client, models: dict[str, Path], results: dict[str, Any]
) -> None:
    alpha, bravo = front, stack.client(KEY_B, base_url=front.base_url)
    job_id = alpha.submit_ok(models["tiny"], LIGHT_RECIPE)
    seen = {
        "owner_get": alpha.get(f"/v1/jobs/{job_id}").status_code,
        "other_get": bravo.get(f"/v1/jobs/{job_id}").status_code,
        "other_report": bravo.get(f"/v1/jobs/{job_id}/report").status_code,
        "other_cancel": bravo.request("DELETE", f"/v1/jobs/{job_id}").status_code,
    }
    other_list = [j["id"] for j in bravo.get("/v1/jobs?limit=100").json()["jobs"]]
    own_list = [j["id"] for j in alpha.get("/v1/jobs?limit=100").json()["jobs"]]
    unknown = bravo.get("/v1/jobs/" + "f" * 32).json()["error"]["message"]
    other = bravo.get(f"/v1/jobs/{job_id}").json()["error"]["message"]

    assert seen == {"owner_get": 200, "other_get": 404, "other_report": 404, "other_cancel": 404}
    assert job_id in own_list and job_id not in other_list
    # Another key's job reads exactly like one that never existed.
    assert other.replace(job_id, "X") == unknown.replace("f" * 32, "X")
    assert alpha.request("DELETE", f"/v1/jobs/{job_id}").status_code == 200
    results["api_keys"] = {"jobs_submitted": 1, **seen, "other_key_listed_it": False}


def test_idempotency_keys_are_scoped_per_api_key(
    stack: Stack, front: Client, models: dict[str, Path]
) -> None:
    headers = {"Idempotency-Key": "same-words-two-clients"}
    first = front.submit(models["tiny"], LIGHT_RECIPE, headers).json()["id"]
    bravo = stack.client(KEY_B, base_url=front.base_url)
    second = bravo.submit(models["tiny"], LIGHT_RECIPE, headers).json()["id"]
    assert first != second


def test_every_configured_digest_is_compared_in_constant_time(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def counting(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    hashes = {auth.hash_key(KEY_A), auth.hash_key(KEY_B), auth.hash_key("third")}
    settings = Settings(
        redis_url=stack.redis.url, key_prefix="rel-inproc", api_key_hashes=",".join(hashes)
    )
    client = create_app(settings).test_client()
    for key in (KEY_A, "wrong"):
        client.get("/v1/jobs", headers={"Authorization": f"Bearer {key}"})
    assert len(calls) == 2 * len(hashes)


def test_keys_are_off_by_default_and_on_in_docker_compose(stack: Stack) -> None:
    settings = Settings(redis_url=stack.redis.url, key_prefix="rel-inproc", _env_file=None)
    assert settings.api_keys() == frozenset()
    assert create_app(settings).test_client().get("/v1/jobs").status_code == 200

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    api_env = compose["services"]["api"]["environment"]
    assert "MOBILECONV_API_KEY_HASHES" in api_env
    assert ":?" in str(api_env["MOBILECONV_API_KEY_HASHES"])


def test_malformed_key_hashes_stop_the_app_at_start(stack: Stack) -> None:
    settings = Settings(redis_url=stack.redis.url, api_key_hashes="not-a-digest")
    with pytest.raises(ValueError, match="64 hex digits"):
        create_app(settings)
