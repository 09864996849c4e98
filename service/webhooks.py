"""Signed webhook deliveries: the final job document POSTed to the recipe's ``callback_url``.

Headers on every delivery:

- ``X-Mobileconv-Timestamp``: Unix seconds when the delivery was signed.
- ``X-Mobileconv-Signature``: ``sha256=<hex>``, HMAC-SHA256 over ``"<timestamp>.<body>"``
  with the webhook secret. Receivers recompute it over the raw body, compare in constant time,
  and reject timestamps more than a few minutes old to stop replays.
- ``X-Mobileconv-Job``: the job id; ``X-Mobileconv-Delivery``: attempt number, from 1.

Retries with exponential backoff are the Celery task's job (``worker.tasks``); this module
signs, checks targets and sends once.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import socket
import time
from urllib.parse import urlsplit

import requests

from service.errors import InvalidRecipe

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Mobileconv-Signature"
TIMESTAMP_HEADER = "X-Mobileconv-Timestamp"


def sign(key: bytes, body: bytes, timestamp: int) -> str:
    """Return the signature header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    key: bytes, body: bytes, timestamp: str, signature: str, *, tolerance_seconds: int = 300
) -> bool:
    """Return whether a delivery is authentic and fresh (for receivers and tests)."""
    try:
        stamp = int(timestamp)
    except ValueError:
        return False
    if abs(time.time() - stamp) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(key, body, stamp), signature)


def check_target(url: str, *, allow_private: bool) -> None:
    """Refuse callback URLs that resolve to loopback, link-local or private addresses.

    Raises:
        InvalidRecipe: the host does not resolve, or resolves to an address not allowed.
    """
    if allow_private:
        return
    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        raise InvalidRecipe(
            f"The callback_url host {host!r} does not resolve.", field="recipe.callback_url"
        ) from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise InvalidRecipe(
                f"The callback_url host {host!r} resolves to the non-public address {address}; "
                "set MOBILECONV_ALLOW_PRIVATE_CALLBACKS=true to allow it.",
                field="recipe.callback_url",
            )


def deliver(
    url: str, body: bytes, key: bytes, *, job_id: str, attempt: int, timeout: float
) -> None:
    """POST one signed delivery.

    Raises:
        requests.RequestException: the receiver could not be reached or did not answer 2xx.
    """
    stamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "mobileconv-webhook/1",
        TIMESTAMP_HEADER: str(stamp),
        SIGNATURE_HEADER: sign(key, body, stamp),
        "X-Mobileconv-Job": job_id,
        "X-Mobileconv-Delivery": str(attempt),
    }
    response = requests.post(
        url, data=body, headers=headers, timeout=timeout, allow_redirects=False
    )
    response.raise_for_status()
    if response.status_code >= 300:
        raise requests.HTTPError(
            f"The receiver answered {response.status_code}, not 2xx.", response=response
        )
