"""Hold HTTP responses to openapi.yaml: every response a service test sees goes through
:meth:`Contract.check`, so the code and the contract cannot drift apart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jsonschema
import requests
import yaml
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from werkzeug.datastructures import Headers, ImmutableMultiDict

SPEC_PATH = Path(__file__).resolve().parents[2] / "openapi.yaml"


class _Request:
    """The parts of a request response validation needs (method and URL; the body of an
    upload has been consumed by then, so it is left out)."""

    def __init__(self, method: str, url: str) -> None:
        parts = urlsplit(url)
        self.method = method.lower()
        self.host_url = f"{parts.scheme}://{parts.netloc}"
        self.path = parts.path
        self.full_url_pattern = self.host_url + self.path
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qsl(parts.query)), header=Headers(), cookie={}
        )
        self.content_type = "application/octet-stream"
        self.body = b""


class _Response:
    """A response as openapi-core reads it; non-JSON bodies are handed over as text, since
    the contract types them as strings."""

    def __init__(self, status: int, headers: Any, content_type: str, body: bytes) -> None:
        self.status_code = status
        self.headers = Headers(list(headers.items()))
        self.content_type = content_type
        self.data = body if "json" in content_type else body.decode("latin-1")


class Contract:
    """Validates responses against the OpenAPI document."""

    def __init__(self, path: Path = SPEC_PATH) -> None:
        self.openapi = OpenAPI.from_file_path(str(path))
        self.document = yaml.safe_load(path.read_text())
        schemas = self.document["components"]["schemas"]
        self._error_schema = {
            "$ref": "#/components/schemas/ErrorDocument",
            "components": {"schemas": schemas},
        }
        self.checked = 0

    def check_werkzeug(self, response: Any) -> None:
        """Validate a Flask test-client response."""
        self._check(
            _Request(response.request.method, response.request.url),
            _Response(
                response.status_code,
                response.headers,
                response.content_type or "",
                response.get_data(),
            ),
            response.status_code,
            response.get_data(),
        )

    def check_requests(self, response: requests.Response) -> None:
        """Validate a ``requests`` response (the live server)."""
        self._check(
            _Request(response.request.method, response.request.url),
            _Response(
                response.status_code,
                response.headers,
                response.headers.get("Content-Type", ""),
                response.content,
            ),
            response.status_code,
            response.content,
        )

    def _check(self, request: Any, response: Any, status: int, body: bytes) -> None:
        try:
            self.openapi.validate_response(request, response)
        except (PathNotFound, OperationNotFound):
            # Unknown routes and methods are not operations, but their answers must still be
            # the documented error document.
            if status not in (404, 405):
                raise
            jsonschema.validate(json.loads(body), self._error_schema)
        self.checked += 1
