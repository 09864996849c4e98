"""API keys: who is calling, and which jobs they may see.

Keys are configured as SHA-256 hex digests (``MOBILECONV_API_KEY_HASHES``), so the service
never holds a key it could leak. A client sends ``Authorization: Bearer <key>`` (or
``X-API-Key: <key>``); the API hashes what it was sent and compares the digest with every
configured one in constant time (:func:`hmac.compare_digest`, no early exit), so neither the
answer nor its timing tells how much of a guess was right.

The digest of the caller's key is the owner of the jobs it submits: another key asking for
such a job gets a 404, exactly as for a job that never existed. With no hashes configured
(the default, for local use) authentication is off and every job is visible to every caller.

Open without a key: liveness and readiness, the contract and its docs page, and artifact
downloads, whose signed URL is itself the credential.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import Request

from service.errors import Unauthorized

PUBLIC_ENDPOINTS = frozenset(
    {
        "api.healthz",
        "api.readyz",
        "api.openapi_yaml",
        "api.docs_page",
        "api.index",
        "api.download_artifact",
    }
)


def hash_key(key: str) -> str:
    """Return the SHA-256 hex digest of ``key``, the form keys are configured in."""
    return hashlib.sha256(key.encode()).hexdigest()


def presented_key(request: Request) -> str | None:
    """Return the key the request carries, or ``None``."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    alternative = request.headers.get("X-API-Key", "").strip()
    return alternative or None


def authenticate(request: Request, key_hashes: frozenset[str]) -> str | None:
    """Return the owner (key digest) of ``request``; ``None`` when keys are off or the
    endpoint is public.

    Raises:
        Unauthorized: keys are on and the request carries no key, or an unknown one.
    """
    if not key_hashes or request.endpoint in PUBLIC_ENDPOINTS or request.endpoint is None:
        return None
    key = presented_key(request)
    if key is None:
        raise Unauthorized(
            "This endpoint needs an API key; send it as 'Authorization: Bearer <key>'.",
            field="Authorization",
        )
    digest = hash_key(key)
    matched = False
    for candidate in key_hashes:
        # Every configured digest is compared, so the time taken does not depend on which
        # one (if any) matches.
        matched |= hmac.compare_digest(digest, candidate)
    if not matched:
        raise Unauthorized(
            "The API key is not one this service accepts; check it, or ask for a new one.",
            field="Authorization",
        )
    return digest
