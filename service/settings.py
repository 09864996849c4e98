"""Settings for the API and the worker, read from ``MOBILECONV_*`` environment variables.

Every field below is one environment variable: ``MOBILECONV_`` plus the field name in upper
case (``MOBILECONV_REDIS_URL`` for ``redis_url``). ``REDIS_URL`` is honoured too when
``MOBILECONV_REDIS_URL`` is unset, since that is what most hosts export. The README's settings
table lists the same variables; keep them in step.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

logger = logging.getLogger(__name__)

GIB = 1024**3
MIB = 1024**2


class Settings(BaseSettings):
    """Configuration shared by the API, the Celery worker and the client.

    Attributes:
        redis_url: Redis for job records, the Celery broker and metrics
            (default ``redis://127.0.0.1:6379/0``).
        data_dir: local directory for artifacts, uploads and the generated secret
            (default ``./var``).
        storage: ``local`` (files under ``data_dir``) or ``s3`` (any S3-compatible store).
        s3_bucket: bucket for ``storage=s3`` (default ``mobileconv``).
        s3_endpoint_url: endpoint of an S3-compatible store such as MinIO; empty for AWS.
        s3_prefix: key prefix inside the bucket (default ``mobileconv/``).
        secret_key: HMAC key for artifact URLs. Empty: a random key is generated once and kept
            in ``data_dir/secret_key`` so every process on the host agrees.
        webhook_secret: HMAC key for webhook signatures (default: ``secret_key``).
        public_url: base URL put in artifact links, e.g. ``https://conv.example.com``.
            Empty: the URL the request came in on.
        url_ttl_seconds: lifetime of a signed artifact URL (default 86400, 24 h).
        job_retention_seconds: how long job records and idempotency keys live in Redis
            (default 604800, 7 days).
        max_upload_bytes: largest whole request body (default 1 GiB).
        max_recipe_bytes: largest ``recipe`` form field (default 64 KiB).
        job_timeout_seconds: wall-clock limit of one conversion (default 1800).
        max_attempts: deliveries of one job before it is failed as killing its worker
            (default 3).
        child_memory_bytes: address-space limit of the conversion process (default 8 GiB).
        child_cpu_seconds: CPU-time limit of the conversion process (default 3600).
        child_file_bytes: largest file the conversion process may write (default 4 GiB).
        child_open_files: most open files of the conversion process (default 1024).
        cancel_poll_seconds: how often the worker checks a running job for cancellation
            (default 1.0).
        webhook_max_attempts: deliveries of a webhook before giving up (default 6).
        webhook_backoff_seconds: first retry delay; doubles each time (default 2.0).
        webhook_timeout_seconds: HTTP timeout of one webhook delivery (default 10.0).
        allow_private_callbacks: accept callback URLs on loopback, link-local and private
            addresses (default false: such URLs are refused at submission and delivery).
        retry_after_seconds: ``Retry-After`` sent with 202 and 503 answers (default 5).
        queue_name: Celery queue of conversions (default ``mobileconv``).
        webhook_queue_name: Celery queue of webhook deliveries (default ``mobileconv-webhooks``).
        key_prefix: prefix of every Redis key the service writes (default ``mobileconv``).
        openapi_path: the contract served at ``/openapi.yaml`` (default: the repo's file).
        log_level: logging level of API and worker (default ``INFO``).
        api_key_hashes: comma-separated SHA-256 hex digests of the accepted API keys. Empty
            (the default) turns authentication off; set, every endpoint but health, docs, the
            contract and signed artifact downloads needs ``Authorization: Bearer <key>``.
        max_input_elements: most elements of ``recipe.input_shape`` (default 16,777,216,
            e.g. 1x3x2048x2048 fits).
        max_input_dimension: largest single dimension of ``recipe.input_shape`` (default 4096).
        max_calibration_samples: largest ``recipe.quantization.calibration_samples``
            (default 1024).
        max_eval_samples: largest ``recipe.benchmark.eval_samples`` (default 1024).
        max_benchmark_runs: largest ``recipe.benchmark.runs + recipe.benchmark.warmup``
            (default 1000).
        max_benchmark_threads: largest ``recipe.benchmark.threads`` (default 8).
        worker_lost_seconds: a running job whose worker has not sent a heartbeat for this long
            is handed to another worker (default 60; workers beat every third of it).
    """

    model_config = SettingsConfigDict(env_prefix="MOBILECONV_", extra="ignore")

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("MOBILECONV_REDIS_URL", "REDIS_URL"),
    )
    data_dir: Path = Path("var")
    storage: str = Field("local", pattern="^(local|s3)$")
    s3_bucket: str = "mobileconv"
    s3_endpoint_url: str = ""
    s3_prefix: str = "mobileconv/"
    secret_key: str = ""
    webhook_secret: str = ""
    public_url: str = ""
    url_ttl_seconds: int = Field(86_400, ge=1)
    job_retention_seconds: int = Field(7 * 86_400, ge=60)
    max_upload_bytes: int = Field(GIB, ge=1)
    max_recipe_bytes: int = Field(64 * 1024, ge=256)
    job_timeout_seconds: int = Field(1800, ge=1)
    max_attempts: int = Field(3, ge=1)
    child_memory_bytes: int = Field(8 * GIB, ge=256 * MIB)
    child_cpu_seconds: int = Field(3600, ge=1)
    child_file_bytes: int = Field(4 * GIB, ge=MIB)
    child_open_files: int = Field(1024, ge=64)
    cancel_poll_seconds: float = Field(1.0, gt=0)
    webhook_max_attempts: int = Field(6, ge=1)
    webhook_backoff_seconds: float = Field(2.0, ge=0)
    webhook_timeout_seconds: float = Field(10.0, gt=0)
    allow_private_callbacks: bool = False
    retry_after_seconds: int = Field(5, ge=1)
    queue_name: str = "mobileconv"
    webhook_queue_name: str = "mobileconv-webhooks"
    key_prefix: str = "mobileconv"
    openapi_path: Path = Path(__file__).resolve().parent.parent / "openapi.yaml"
    log_level: str = "INFO"
    api_key_hashes: str = ""
    max_input_elements: int = Field(16 * 1024 * 1024, ge=1)
    max_input_dimension: int = Field(4096, ge=1)
    max_calibration_samples: int = Field(1024, ge=1)
    max_eval_samples: int = Field(1024, ge=1)
    max_benchmark_runs: int = Field(1000, ge=1)
    max_benchmark_threads: int = Field(8, ge=1)
    worker_lost_seconds: float = Field(60.0, ge=3.0)

    def api_keys(self) -> frozenset[str]:
        """Return the configured key hashes, lower-case; empty when keys are off.

        Raises:
            ValueError: an entry is not 64 hex digits.
        """
        hashes = [h.strip().lower() for h in self.api_key_hashes.split(",") if h.strip()]
        for value in hashes:
            if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
                raise ValueError(
                    "MOBILECONV_API_KEY_HASHES must list SHA-256 hex digests (64 hex digits "
                    f"each, comma-separated); found {value[:12]!r}... of length {len(value)}."
                )
        return frozenset(hashes)

    def signing_key(self) -> bytes:
        """Return the key for artifact URLs, generating and storing one on first use."""
        if self.secret_key:
            return self.secret_key.encode()
        return _stored_secret(self.data_dir).encode()

    def webhook_key(self) -> bytes:
        """Return the key webhook signatures are made with."""
        return self.webhook_secret.encode() if self.webhook_secret else self.signing_key()


def _stored_secret(data_dir: Path) -> str:
    path = data_dir / "secret_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        # O_EXCL makes the first process win; every later one reads what it wrote.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
            logger.warning("No MOBILECONV_SECRET_KEY set; generated one in %s.", path)
    for _ in range(50):
        value = path.read_text().strip()
        if value:
            return value
        time.sleep(0.01)
    raise RuntimeError(f"The secret key file {path} is empty; delete it or set the key.")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read from the environment once."""
    return Settings()
