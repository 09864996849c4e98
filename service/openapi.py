"""Build ``openapi.yaml``, the HTTP contract, from the routes' descriptions below and the
Pydantic models in ``service.schemas``, so the schemas in the contract are the ones the code
validates with. Regenerate after changing either::

    .venv/bin/python -m service.openapi > openapi.yaml

``tests/service/test_contract.py`` fails when the committed file and this module disagree.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml
from pydantic.json_schema import models_json_schema

from service.schemas import ErrorDocument, Job, JobList, Recipe, Report

_REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(name: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ref(name)}},
    }
    if headers:
        body["headers"] = headers
    return body


def _error(description: str) -> dict[str, Any]:
    return _json("ErrorDocument", description)


_RETRY_AFTER = {
    "description": "Seconds to wait before asking again.",
    "schema": {"type": "integer"},
}
_UNAVAILABLE = {
    "description": "Redis or the queue is unreachable; retry after Retry-After seconds.",
    "headers": {"Retry-After": _RETRY_AFTER},
    "content": {"application/json": {"schema": _ref("ErrorDocument")}},
}
_UNAUTHORIZED = {
    "description": "API keys are on and the request carries no key, or an unknown one.",
    "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    "content": {"application/json": {"schema": _ref("ErrorDocument")}},
}
# Keys are optional in the contract because they are off unless configured
# (MOBILECONV_API_KEY_HASHES); the empty requirement is what says so.
_KEYED: list[dict[str, list[str]]] = [{"bearerAuth": []}, {}]
_OPEN: list[dict[str, list[str]]] = []
_JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "description": "The job id from the submission's answer (32 hex digits).",
    "schema": {"type": "string"},
}


def _paths() -> dict[str, Any]:
    submit = {
        "summary": "Submit a model for conversion",
        "description": "Multipart upload: the model file, the recipe JSON (a text field or a "
        "file part), and optional calibration and evaluation arrays (.npz/.npy). The upload "
        "is streamed to storage and hashed. Send an Idempotency-Key header to make retries "
        "safe: the same key with the same body returns the same job; with another body, 422.",
        "operationId": "submitJob",
        "security": _KEYED,
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Any string up to 255 characters, unique per intended job.",
                "schema": {"type": "string", "maxLength": 255},
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["model", "recipe"],
                        "properties": {
                            "model": {
                                "type": "string",
                                "format": "binary",
                                "description": "ExportedProgram (.pt2), TorchScript, "
                                "or a torchvision state_dict.",
                            },
                            "recipe": {"type": "string", "description": "The Recipe as JSON text."},
                            "calibration": {"type": "string", "format": "binary"},
                            "evaluation": {"type": "string", "format": "binary"},
                        },
                    }
                }
            },
        },
        "responses": {
            "202": _json(
                "Job",
                "Accepted and queued (or the earlier job, for a replayed Idempotency-Key).",
                {
                    "Location": {"description": "The job's URL.", "schema": {"type": "string"}},
                    "Retry-After": _RETRY_AFTER,
                },
            ),
            "400": _error("Not multipart, an unknown or empty part, or a bad header."),
            "401": _UNAUTHORIZED,
            "413": _error("The upload or a form field is over its limit; the message names it."),
            "422": _error(
                "The recipe is invalid or over a configured limit (field names the field), "
                "or the Idempotency-Key was used with another body."
            ),
            "503": _UNAVAILABLE,
        },
    }
    list_jobs = {
        "summary": "List jobs, newest first",
        "operationId": "listJobs",
        "security": _KEYED,
        "parameters": [
            {
                "name": "status",
                "in": "query",
                "required": False,
                "schema": {
                    "type": "string",
                    "enum": ["queued", "running", "succeeded", "failed", "cancelled"],
                },
            },
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
            },
            {
                "name": "cursor",
                "in": "query",
                "required": False,
                "description": "next_cursor of the previous page.",
                "schema": {"type": "string"},
            },
        ],
        "responses": {
            "200": _json("JobList", "A page of jobs."),
            "400": _error("A bad status, limit or cursor."),
            "401": _UNAUTHORIZED,
            "503": _UNAVAILABLE,
        },
    }
    job_errors = {
        "401": _UNAUTHORIZED,
        "404": _error("No such job (never created, expired, or another key's)."),
        "503": _UNAVAILABLE,
    }
    return {
        "/v1/jobs": {"post": submit, "get": list_jobs},
        "/v1/jobs/{job_id}": {
            "parameters": [_JOB_ID],
            "get": {
                "summary": "Get a job",
                "operationId": "getJob",
                "security": _KEYED,
                "responses": {
                    "200": _json(
                        "Job", "The job document; artifact URLs are signed afresh on every read."
                    ),
                    **job_errors,
                },
            },
            "delete": {
                "summary": "Cancel a queued or running job",
                "operationId": "cancelJob",
                "security": _KEYED,
                "description": "A running conversion is stopped within a second or so.",
                "responses": {
                    "200": _json("Job", "The cancelled job."),
                    "409": _error("The job has already ended."),
                    **job_errors,
                },
            },
        },
        "/v1/jobs/{job_id}/report": {
            "parameters": [_JOB_ID],
            "get": {
                "summary": "Get a succeeded job's report",
                "operationId": "getReport",
                "security": _KEYED,
                "responses": {
                    "200": _json("Report", "The report (also report.json)."),
                    "401": _UNAUTHORIZED,
                    "404": _error("No such job, or it has not succeeded."),
                    "503": _UNAVAILABLE,
                },
            },
        },
        "/v1/artifacts/{job_id}/{name}": {
            "parameters": [
                _JOB_ID,
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "expires", "in": "query", "required": False, "schema": {"type": "string"}},
                {
                    "name": "signature",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string"},
                },
            ],
            "get": {
                "summary": "Download an artifact through its signed URL",
                "operationId": "downloadArtifact",
                "security": _OPEN,
                "description": "Honours Range and If-None-Match (the ETag is the sha256).",
                "responses": {
                    "200": {
                        "description": "The file.",
                        "headers": {"ETag": {"schema": {"type": "string"}}},
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    },
                    "206": {
                        "description": "The requested byte range.",
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    },
                    "302": {"description": "Redirect to the object store (S3 storage)."},
                    "304": {"description": "Not modified (If-None-Match matched)."},
                    "403": _error("The signature is missing or wrong, or the URL expired."),
                    "404": _error("No such job or artifact."),
                    "416": _error("The range is outside the file."),
                    "503": _UNAVAILABLE,
                },
            },
        },
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "operationId": "healthz",
                "security": _OPEN,
                "responses": {
                    "200": {
                        "description": "The process is alive.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness",
                "operationId": "readyz",
                "security": _OPEN,
                "responses": {
                    "200": {
                        "description": "Redis answers and a worker reported recently.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["status", "workers"],
                                    "properties": {
                                        "status": {"type": "string"},
                                        "workers": {"type": "array", "items": {"type": "string"}},
                                    },
                                }
                            }
                        },
                    },
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "operationId": "metrics",
                "security": _KEYED,
                "responses": {
                    "200": {
                        "description": "Text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "401": _UNAUTHORIZED,
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/openapi.yaml": {
            "get": {
                "summary": "This contract",
                "operationId": "openapi",
                "security": _OPEN,
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1 YAML (this document; no schema is given "
                        "since YAML readers turn it into an object, text readers into a string).",
                        "content": {"application/yaml": {}},
                    }
                },
            }
        },
        "/docs": {
            "get": {
                "summary": "This contract as HTML",
                "operationId": "docs",
                "security": _OPEN,
                "responses": {
                    "200": {
                        "description": "An HTML page.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }


def build() -> dict[str, Any]:
    """Return the OpenAPI document as a dict."""
    _, definitions = models_json_schema(
        [(m, "serialization") for m in (Job, JobList, Report, Recipe, ErrorDocument)],
        ref_template=_REF,
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mobileconv",
            "version": "1.0.0",
            "description": "Turn trained PyTorch models into int8 mobile artifacts (.pte for "
            "ExecuTorch, .ptl for the lite interpreter). Submit a job, poll it (or receive a "
            "signed webhook), download the artifacts through signed, expiring URLs. Every error "
            'is {"error": {"code", "message", "field"}} with a stable code.',
        },
        "servers": [{"url": "/"}],
        "paths": _paths(),
        "components": {
            "schemas": definitions["$defs"],
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key, when the service has keys configured "
                    "(MOBILECONV_API_KEY_HASHES); each key sees only the jobs it submitted.",
                }
            },
        },
    }


def dump() -> str:
    """Return the OpenAPI document as YAML text."""
    return yaml.safe_dump(build(), sort_keys=False, width=100, allow_unicode=True)


if __name__ == "__main__":
    sys.stdout.write(dump())
