"""Signed webhook deliveries: the final job document POSTed to the recipe's ``callback_url``.

Headers on every delivery:

- ``X-Mobileconv-Timestamp``: Unix seconds when the delivery was signed.
- ``X-Mobileconv-Signature``: ``sha256=<hex>``, HMAC-SHA256 over ``"<timestamp>.<body>"``
  with the webhook secret. Receivers recompute it over the raw body, compare in constant time,
  and reject timestamps more than a few minutes old to stop replays.
- ``X-Mobileconv-Job``: the job id; ``X-Mobileconv-Delivery``: attempt number, from 1.

Targets are checked twice: at submission (a 422 for a callback on loopback, link-local or
private addresses) and again at every delivery, since a name can resolve elsewhere by then (DNS
rebinding). The delivery connects to the very address it checked, not to whatever a second
lookup returns, while TLS still verifies the certificate against the URL's host name.

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
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

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
    """Refuse callback URLs that resolve to loopback, link-local or private addresses (at
    submission; with ``allow_private`` the host is not even looked up).

    Raises:
        InvalidRecipe: the host does not resolve, or resolves to an address not allowed.
    """
    if not allow_private:
        resolve_target(url, allow_private=False)


def resolve_target(url: str, *, allow_private: bool) -> list[str]:
    """Resolve the callback URL's host and refuse loopback, link-local and private addresses.

    Returns:
        The addresses the host resolved to, every one allowed (the first is connected to).

    Raises:
        InvalidRecipe: the host does not resolve, or resolves to an address not allowed.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        infos = socket.getaddrinfo(host, parts.port or 80, proto=socket.IPPROTO_TCP)
    except OSError:
        raise InvalidRecipe(
            f"The callback_url host {host!r} does not resolve.", field="recipe.callback_url"
        ) from None
    addresses: list[str] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not allow_private and not address.is_global:
            raise InvalidRecipe(
                f"The callback_url host {host!r} resolves to the non-public address {address}; "
                "set MOBILECONV_ALLOW_PRIVATE_CALLBACKS=true to allow it.",
                field="recipe.callback_url",
            )
        if str(address) not in addresses:
            addresses.append(str(address))
    if not addresses:
        raise InvalidRecipe(
            f"The callback_url host {host!r} resolves to no address.", field="recipe.callback_url"
        )
    return addresses


class _PinnedAdapter(HTTPAdapter):
    """Connects to a checked IP address while TLS verifies the URL's own host name."""

    def __init__(self, hostname: str) -> None:
        self._hostname = hostname
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["server_hostname"] = self._hostname
        kwargs["assert_hostname"] = self._hostname
        super().init_poolmanager(*args, **kwargs)


def _pinned_url(url: str, address: str) -> tuple[str, str]:
    """Return the URL with its host replaced by ``address``, and the original Host header."""
    parts = urlsplit(url)
    host_header = parts.netloc.rsplit("@", 1)[-1]
    literal = f"[{address}]" if ":" in address else address
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")), host_header


def deliver(
    url: str,
    body: bytes,
    key: bytes,
    *,
    job_id: str,
    attempt: int,
    timeout: float,
    allow_private: bool = False,
) -> None:
    """Check the target again and POST one signed delivery to the address that was checked.

    Raises:
        InvalidRecipe: the host now resolves to an address not allowed (DNS rebinding).
        requests.RequestException: the receiver could not be reached or did not answer 2xx.
    """
    address = resolve_target(url, allow_private=allow_private)[0]
    pinned, host_header = _pinned_url(url, address)
    stamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "mobileconv-webhook/1",
        TIMESTAMP_HEADER: str(stamp),
        SIGNATURE_HEADER: sign(key, body, stamp),
        "X-Mobileconv-Job": job_id,
        "X-Mobileconv-Delivery": str(attempt),
        "Host": host_header,
    }
    with requests.Session() as session:
        session.trust_env = False  # a proxy would resolve the name again
        adapter = _PinnedAdapter(urlsplit(url).hostname or "")
        session.mount(pinned.split("://", 1)[0] + "://", adapter)
        response = session.post(
            pinned, data=body, headers=headers, timeout=timeout, allow_redirects=False
        )
    response.raise_for_status()
    if response.status_code >= 300:
        raise requests.HTTPError(
            f"The receiver answered {response.status_code}, not 2xx.", response=response
        )
