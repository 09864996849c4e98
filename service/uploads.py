"""Parse the multipart submission of ``POST /v1/jobs``: stream file parts to disk while
hashing them, validate the recipe, and turn every problem into a 4xx naming the part at fault.

Werkzeug's form parser writes each file part into the stream :class:`UploadRequest` hands it,
chunk by chunk, so a 1 GiB model never sits in memory; :class:`HashingFile` hashes the bytes
on their way to the staging directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from flask import Request, current_app, g
from pydantic import ValidationError

from service.errors import InvalidRecipe, MissingPart, PayloadTooLarge, RequestError
from service.schemas import Recipe

FILE_PARTS = ("model", "calibration", "evaluation")
ALLOWED_PARTS = frozenset({*FILE_PARTS, "recipe"})


class HashingFile:
    """A spool file that hashes (sha256) and counts what is written to it."""

    def __init__(self, directory: Path) -> None:
        fd, name = tempfile.mkstemp(dir=directory, prefix="upload-")
        self.path = Path(name)
        self._file: IO[bytes] = os.fdopen(fd, "w+b")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self.size += len(data)
        return self._file.write(data)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


class UploadRequest(Request):
    """A request whose file parts are spooled to :class:`HashingFile` objects."""

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        spool = HashingFile(current_app.config["MOBILECONV_STAGING"])
        g.setdefault("spooled", []).append(spool)
        return spool  # type: ignore[return-value]


@dataclass
class Submission:
    """A parsed, validated submission whose files are still in the staging directory."""

    recipe: Recipe
    files: dict[str, HashingFile]

    @property
    def hashes(self) -> dict[str, str]:
        return {name: spool.sha256 for name, spool in self.files.items()}


def parse_submission(request: Request, max_recipe_bytes: int) -> Submission:
    """Return the submission in ``request``.

    Raises:
        RequestError: not multipart, an unknown part, or an empty file.
        MissingPart: no ``model`` or no ``recipe`` part.
        InvalidRecipe: the recipe is not JSON or does not validate; ``field`` names the field.
    """
    if request.mimetype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise RequestError(
            "Submit jobs as multipart/form-data with a model file part and a recipe part; "
            f"got Content-Type {request.mimetype or 'none'!r}.",
            field="Content-Type",
        )
    unknown = sorted((set(request.files) | set(request.form)) - ALLOWED_PARTS)
    if unknown:
        raise RequestError(
            f"Unknown form part {unknown[0]!r}; the parts are model, recipe, calibration and "
            "evaluation.",
            field=unknown[0],
        )

    files: dict[str, HashingFile] = {}
    for name in FILE_PARTS:
        if name in request.form:
            raise RequestError(
                f"The {name} part must be a file upload, not a text field.", field=name
            )
        if name in request.files:
            spool = request.files[name].stream
            if not isinstance(spool, HashingFile) or spool.size == 0:
                raise RequestError(f"The {name} file is empty.", field=name)
            spool.flush()
            files[name] = spool
    if "model" not in files:
        raise MissingPart(
            "The request has no model part; attach the model file as 'model'.", field="model"
        )

    recipe = parse_recipe(_recipe_text(request, max_recipe_bytes))
    return Submission(recipe=recipe, files=files)


def _recipe_text(request: Request, max_recipe_bytes: int) -> str:
    if "recipe" in request.files:
        spool = request.files["recipe"].stream
        if spool.size > max_recipe_bytes:
            raise PayloadTooLarge(
                f"The recipe is {spool.size} bytes; the limit is {max_recipe_bytes} bytes "
                "(MOBILECONV_MAX_RECIPE_BYTES).",
                field="recipe",
            )
        spool.seek(0)
        raw = spool.read()
    elif "recipe" in request.form:
        raw = request.form["recipe"].encode()
        if len(raw) > max_recipe_bytes:
            raise PayloadTooLarge(
                f"The recipe is {len(raw)} bytes; the limit is {max_recipe_bytes} bytes "
                "(MOBILECONV_MAX_RECIPE_BYTES).",
                field="recipe",
            )
    else:
        raise MissingPart(
            "The request has no recipe part; send the recipe JSON as 'recipe'.", field="recipe"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRecipe("The recipe is not UTF-8 text.", field="recipe") from None


def parse_recipe(text: str) -> Recipe:
    """Return the validated recipe in the JSON ``text``.

    Raises:
        InvalidRecipe: malformed JSON, not an object, or a field that does not validate.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRecipe(
            f"The recipe is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}.",
            field="recipe",
        ) from None
    if not isinstance(data, dict):
        raise InvalidRecipe(
            f"The recipe must be a JSON object, not {type(data).__name__}.", field="recipe"
        )
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise _recipe_error(exc) from None


def _recipe_error(exc: ValidationError) -> InvalidRecipe:
    problems = []
    for error in exc.errors(include_url=False):
        location = ".".join(["recipe", *(str(part) for part in error["loc"])])
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "is not a recipe field (unknown fields are rejected)"
        problems.append((location, message))
    first_field = problems[0][0]
    text = "; ".join(f"{field}: {message}" for field, message in problems)
    return InvalidRecipe(f"The recipe is invalid. {text}.", field=first_field)


def discard_spooled() -> None:
    """Delete spool files a request left in the staging directory (moved ones are gone)."""
    for spool in g.pop("spooled", []):
        try:
            spool.close()
        finally:
            spool.path.unlink(missing_ok=True)
