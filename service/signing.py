"""HMAC-signed, expiring artifact URLs.

A URL is ``/v1/artifacts/<job id>/<name>?expires=<unix seconds>&signature=<hex>`` where the
signature is HMAC-SHA256 over ``"<job id>/<name>\\n<expires>"`` with the service's secret key.
Anyone holding the URL can download until it expires; changing any part breaks the signature.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from service.errors import Forbidden
from service.schemas import Artifact

if TYPE_CHECKING:
    from service.jobs import StoredArtifact


def _mac(key: bytes, job_id: str, name: str, expires: int) -> str:
    message = f"{job_id}/{name}\n{expires}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign_path(
    key: bytes, job_id: str, name: str, ttl_seconds: int, *, now: float | None = None
) -> tuple[str, datetime]:
    """Return the signed path of an artifact and when it expires.

    Args:
        key: the HMAC secret.
        job_id: the job the artifact belongs to.
        name: the artifact's file name, e.g. ``model.pte``.
        ttl_seconds: lifetime of the URL in seconds.
        now: the current Unix time (tests pass a fixed one).
    """
    expires = int(now if now is not None else time.time()) + ttl_seconds
    signature = _mac(key, job_id, name, expires)
    path = f"/v1/artifacts/{job_id}/{name}?expires={expires}&signature={signature}"
    return path, datetime.fromtimestamp(expires, UTC)


def verify(
    key: bytes,
    job_id: str,
    name: str,
    expires: str | None,
    signature: str | None,
    *,
    now: float | None = None,
) -> None:
    """Check a signed URL's parameters.

    Raises:
        Forbidden: the signature is missing or does not match, or the URL has expired.
    """
    if not expires or not signature:
        raise Forbidden(
            "Artifact downloads need the signed URL from the job document "
            "(with its expires and signature parameters)."
        )
    try:
        expires_at = int(expires)
    except ValueError:
        raise Forbidden("The artifact URL's signature does not match; it was altered.") from None
    if not hmac.compare_digest(_mac(key, job_id, name, expires_at), signature):
        raise Forbidden("The artifact URL's signature does not match; it was altered.")
    if expires_at < (now if now is not None else time.time()):
        when = datetime.fromtimestamp(expires_at, UTC).isoformat()
        raise Forbidden(f"The artifact URL expired at {when}; fetch the job again for a fresh URL.")


def make_signer(
    key: bytes, base_url: str, ttl_seconds: int
) -> Callable[[StoredArtifact], Artifact]:
    """Return a function that turns a stored artifact into its public form with a signed URL.

    Args:
        key: the HMAC secret.
        base_url: scheme and host the URLs start with, e.g. ``http://127.0.0.1:8000``.
        ttl_seconds: lifetime of each URL in seconds.
    """
    base = base_url.rstrip("/")

    def sign(artifact: StoredArtifact) -> Artifact:
        job_id = artifact.key.split("/")[1]
        path, expires_at = sign_path(key, job_id, artifact.name, ttl_seconds)
        return Artifact(
            name=artifact.name,
            media_type=artifact.media_type,
            bytes=artifact.bytes,
            sha256=artifact.sha256,
            url=base + path,
            expires_at=expires_at,
        )

    return sign
