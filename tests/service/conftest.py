"""Fixtures for the service tests: the real Redis (db 15, only that db is flushed), settings
isolated by a key prefix per test, a Flask test client whose every response is checked
against openapi.yaml, and (in ``live.py``) the real API server and Celery worker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from contract import Contract

from service.app import create_app
from service.jobs import JobStore
from service.settings import Settings

REDIS_URL = "redis://127.0.0.1:6379/15"
SECRET = "test-secret-key"

# The end-to-end fixtures live in live.py; importing them here makes them visible to the
# tests below this directory (pytest_plugins is only allowed in the top-level conftest).
from live import (  # noqa: E402, F401
    api,
    live_dir,
    live_env,
    live_server,
    live_worker,
    receiver,
    resnet18_file,
    succeeded_job,
)


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("The service tests need Redis at 127.0.0.1:6379.")
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture(scope="session")
def contract() -> Contract:
    return Contract()


@pytest.fixture
def settings(tmp_path: Path, redis_client: redis.Redis) -> Settings:
    return Settings(
        redis_url=REDIS_URL,
        data_dir=tmp_path / "var",
        secret_key=SECRET,
        key_prefix=f"t-{uuid.uuid4().hex[:8]}",
        queue_name="unit-tests",
        webhook_queue_name="unit-tests-webhooks",
        max_upload_bytes=256 * 1024,
        max_recipe_bytes=4096,
        allow_private_callbacks=True,
    )


@pytest.fixture
def store(settings: Settings, redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client, settings)


class CheckedClient:
    """A Flask test client that validates every response against the contract."""

    def __init__(self, client: Any, contract: Contract) -> None:
        self._client = client
        self._contract = contract

    def open(self, *args: Any, **kwargs: Any) -> Any:
        response = self._client.open(*args, **kwargs)
        self._contract.check_werkzeug(response)
        return response

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self.open(*args, method="GET", **kwargs)

    def post(self, *args: Any, **kwargs: Any) -> Any:
        return self.open(*args, method="POST", **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        return self.open(*args, method="DELETE", **kwargs)

    def put(self, *args: Any, **kwargs: Any) -> Any:
        return self.open(*args, method="PUT", **kwargs)


@pytest.fixture
def client(settings: Settings, contract: Contract) -> CheckedClient:
    app = create_app(settings)
    return CheckedClient(app.test_client(), contract)
