"""Signed artifact URLs and webhook signatures."""

from __future__ import annotations

import time

import pytest

from service import signing, webhooks
from service.errors import Forbidden

KEY = b"k" * 32
JOB = "a" * 32


def _params(path: str) -> tuple[str, str]:
    query = dict(part.split("=") for part in path.split("?")[1].split("&"))
    return query["expires"], query["signature"]


def test_signed_path_verifies() -> None:
    path, expires_at = signing.sign_path(KEY, JOB, "model.pte", 3600)
    signing.verify(KEY, JOB, "model.pte", *_params(path))
    assert expires_at.timestamp() > time.time() + 3500


@pytest.mark.parametrize(
    ("job", "name", "key"),
    [(JOB, "model.ptl", KEY), ("b" * 32, "model.pte", KEY), (JOB, "model.pte", b"other")],
)
def test_tampered_url_is_forbidden(job: str, name: str, key: bytes) -> None:
    path, _ = signing.sign_path(KEY, JOB, "model.pte", 3600)
    with pytest.raises(Forbidden, match="altered"):
        signing.verify(key, job, name, *_params(path))


def test_expired_and_unsigned_urls_are_forbidden() -> None:
    path, _ = signing.sign_path(KEY, JOB, "model.pte", 10, now=time.time() - 100)
    with pytest.raises(Forbidden, match="expired"):
        signing.verify(KEY, JOB, "model.pte", *_params(path))
    with pytest.raises(Forbidden, match="signed URL"):
        signing.verify(KEY, JOB, "model.pte", None, None)


def test_webhook_signature_round_trip_and_replay_window() -> None:
    body = b'{"id": "x"}'
    now = int(time.time())
    signature = webhooks.sign(KEY, body, now)
    assert signature.startswith("sha256=")
    assert webhooks.verify(KEY, body, str(now), signature)
    assert not webhooks.verify(KEY, body + b" ", str(now), signature)
    old = now - 3600
    assert not webhooks.verify(KEY, body, str(old), webhooks.sign(KEY, body, old))


def test_private_callback_targets_are_refused_unless_allowed() -> None:
    from service.errors import InvalidRecipe

    with pytest.raises(InvalidRecipe, match="non-public"):
        webhooks.check_target("http://127.0.0.1:9/hook", allow_private=False)
    webhooks.check_target("http://127.0.0.1:9/hook", allow_private=True)
