"""The Flask application factory: wiring of settings, Redis, storage, Celery and routes, and the
one error handler that renders every failure as ``{"error": {"code", "message", "field"}}``.

Run it with gunicorn (``gunicorn -c service/gunicorn_conf.py 'service.app:create_app()'``) or,
for a quick look, ``flask --app service.app:create_app run``.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from service import auth, routes
from service.errors import MobileconvError, PayloadTooLarge, ServiceUnavailable, Unauthorized
from service.jobs import JobStore
from service.queue import create_celery
from service.settings import Settings, get_settings
from service.storage import create_storage, staging_dir
from service.uploads import UploadRequest, discard_spooled

logger = logging.getLogger(__name__)

# Werkzeug's own HTTP errors, by status, as stable codes clients can branch on.
_HTTP_CODES = {
    400: "bad-request",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    411: "length-required",
    413: "payload-too-large",
    415: "unsupported-media-type",
    416: "range-not-satisfiable",
}


def create_app(settings: Settings | None = None) -> Flask:
    """Return the API application.

    Args:
        settings: configuration; the environment's (``MOBILECONV_*``) when omitted.
    """
    settings = settings or get_settings()
    logging.basicConfig(level=settings.log_level)
    key_hashes = settings.api_keys()
    if not key_hashes:
        logger.warning("No MOBILECONV_API_KEY_HASHES set: API keys are off, every job is open.")
    app = Flask(__name__)
    app.request_class = UploadRequest
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_upload_bytes,
        # Werkzeug applies this to its parse buffer, file chunks included (read 64 KiB at a
        # time), so it must sit well above the chunk size; the recipe's own limit is checked
        # in service.uploads.
        MAX_FORM_MEMORY_SIZE=settings.max_recipe_bytes + 512 * 1024,
        MOBILECONV_STAGING=staging_dir(settings),
    )

    client = redis.Redis.from_url(
        settings.redis_url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30
    )
    app.extensions["mobileconv"] = routes.Services(
        settings=settings,
        redis=client,
        jobs=JobStore(client, settings),
        storage=create_storage(settings),
        celery=create_celery(settings),
    )
    app.register_blueprint(routes.api)
    _register_error_handlers(app, settings)

    @app.before_request
    def _authenticate() -> None:
        g.owner = auth.authenticate(request, key_hashes)

    app.teardown_request(lambda _exc: discard_spooled())
    return app


def _register_error_handlers(app: Flask, settings: Settings) -> None:
    @app.errorhandler(MobileconvError)
    def _mobileconv_error(error: MobileconvError) -> tuple[Response, int, dict[str, str]]:
        headers: dict[str, str] = {}
        if isinstance(error, ServiceUnavailable):
            headers["Retry-After"] = str(settings.retry_after_seconds)
        if isinstance(error, Unauthorized):
            headers["WWW-Authenticate"] = 'Bearer realm="mobileconv"'
        return jsonify(error.to_dict()), error.status, headers

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(_error: RequestEntityTooLarge) -> Any:
        length = request.content_length
        if length is not None and length <= settings.max_upload_bytes:
            message = (
                f"A form field is larger than the {settings.max_recipe_bytes}-byte limit "
                "(MOBILECONV_MAX_RECIPE_BYTES); send large inputs as file parts."
            )
        else:
            message = (
                f"The upload is larger than the {settings.max_upload_bytes}-byte limit "
                "(MOBILECONV_MAX_UPLOAD_BYTES)."
            )
        return _mobileconv_error(PayloadTooLarge(message))

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Any:
        status = error.code or 500
        code = _HTTP_CODES.get(status, "bad-request" if status < 500 else "internal")
        message = error.description or error.name
        if status == 404:
            message = f"There is no route {request.path}; see /docs for the API."
        elif status == 405:
            allowed = ", ".join(sorted(getattr(error, "valid_methods", None) or []))
            message = f"{request.method} is not allowed on {request.path}; allowed: {allowed}."
        response = jsonify({"error": {"code": code, "message": message, "field": None}})
        return response, status, dict(error.get_headers()) | {"Content-Type": "application/json"}

    @app.errorhandler(redis.ConnectionError)
    @app.errorhandler(redis.TimeoutError)
    def _redis_down(error: redis.RedisError) -> Any:
        logger.warning("Redis is unreachable: %s", error)
        return _mobileconv_error(
            ServiceUnavailable("The job store is unreachable; retry in a few seconds.")
        )

    @app.errorhandler(Exception)
    def _internal(error: Exception) -> Any:
        logger.exception("Unhandled error on %s %s.", request.method, request.path)
        body = {
            "error": {
                "code": "internal",
                "message": "The server failed unexpectedly; the error was logged.",
                "field": None,
            }
        }
        return jsonify(body), 500
