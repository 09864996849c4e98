"""Callback URLs on loopback, link-local and private addresses are refused at submission, and
again at delivery, where the connection goes to the address that was checked (DNS
rebinding gets nowhere)."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from service import webhooks
from service.errors import InvalidRecipe
from tests.reliability.conftest import LIGHT_RECIPE, Client, free_port

PRIVATE_TARGETS = [
    "http://127.0.0.1:9/hook",
    "http://[::1]:9/hook",
    "http://localhost/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://10.1.2.3/hook",
    "http://172.16.0.1/hook",
    "http://192.168.1.1/hook",
    "http://[fd00::1]/hook",
]


@pytest.mark.parametrize("url", PRIVATE_TARGETS)
def test_private_callback_is_refused_at_submission(
    front: Client, models: dict[str, Path], url: str
) -> None:
    response = front.submit(models["tiny"], {**LIGHT_RECIPE, "callback_url": url})
    error = response.json()["error"]
    assert (response.status_code, error["field"]) == (422, "recipe.callback_url")
    assert "MOBILECONV_ALLOW_PRIVATE_CALLBACKS" in error["message"]


@pytest.fixture
def receiver() -> Iterator[tuple[int, list[bytes]]]:
    port, seen = free_port(), []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            seen.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield port, seen
    server.shutdown()


def _rebinding(monkeypatch: pytest.MonkeyPatch, first: str, then: str) -> list[str]:
    """Make every lookup answer ``first`` once, then ``then``: a rebinding name server."""
    answers: list[str] = []
    real = socket.getaddrinfo

    def lookup(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "hooks.example.com":
            return real(host, port, *args, **kwargs)
        address = first if not answers else then
        answers.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 80))]

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    return answers


def test_rebinding_to_loopback_is_refused_at_delivery(
    monkeypatch: pytest.MonkeyPatch, receiver: tuple[int, list[bytes]]
) -> None:
    port, seen = receiver
    answers = _rebinding(monkeypatch, "93.184.216.34", "127.0.0.1")
    url = f"http://hooks.example.com:{port}/hook"
    webhooks.check_target(url, allow_private=False)  # submission: a public address
    with pytest.raises(InvalidRecipe, match="non-public address 127.0.0.1"):
        webhooks.deliver(url, b"{}", b"k", job_id="j", attempt=1, timeout=2)
    assert answers == ["93.184.216.34", "127.0.0.1"] and seen == []


def test_delivery_connects_to_the_address_it_checked(
    monkeypatch: pytest.MonkeyPatch, receiver: tuple[int, list[bytes]]
) -> None:
    port, seen = receiver
    # The check sees a public address; a second lookup would say loopback. Pinned, the
    # delivery goes to the public address (unreachable here) and never to the receiver.
    _rebinding(monkeypatch, "192.0.2.10", "127.0.0.1")
    url = f"http://hooks.example.com:{port}/hook"
    with pytest.raises((requests.RequestException, InvalidRecipe)):
        webhooks.deliver(url, b"{}", b"k", job_id="j", attempt=1, timeout=2, allow_private=True)
    assert seen == []


def test_allowed_private_delivery_reaches_the_receiver_with_host_header(
    receiver: tuple[int, list[bytes]],
) -> None:
    port, seen = receiver
    url = f"http://localhost:{port}/hook"
    webhooks.deliver(url, b'{"ok": 1}', b"k", job_id="j", attempt=1, timeout=5, allow_private=True)
    assert seen == [b'{"ok": 1}']
