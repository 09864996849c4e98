"""Every error mobileconv reports, with a stable kebab-case ``code`` and an HTTP status.

    MobileconvError                      code                 status
    ├── RequestError                     (bad request)        400
    │   ├── InvalidRecipe                invalid-recipe       422
    │   ├── MissingPart                  missing-part         400
    │   ├── PayloadTooLarge              payload-too-large    413
    │   ├── IdempotencyConflict          idempotency-conflict 422
    │   └── MethodNotAllowed             method-not-allowed   405
    ├── NotFound                         not-found            404
    ├── Forbidden                        forbidden            403
    ├── Unauthorized                     unauthorized         401
    ├── ServiceUnavailable               unavailable          503
    ├── Conflict                         conflict             409
    └── ConversionError                  (job failed)         422
        ├── InvalidModel                 invalid-model
        ├── UnsupportedRecipe            unsupported-recipe
        ├── InputMismatch                input-mismatch
        ├── InvalidData                  invalid-data
        ├── ExportFailed                 export-failed
        ├── FidelityMissed               fidelity-target-missed
        └── ResourceLimit                resource-limit

A ``ConversionError`` never reaches an HTTP response directly: the worker stores its code and
message on the failed job. The API renders every other error as
``{"error": {"code", "message", "field"}}``.
"""

from __future__ import annotations


class MobileconvError(Exception):
    """Base class: a message for a person, a code for a program, and the field at fault."""

    code = "internal"
    status = 500

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


class RequestError(MobileconvError):
    code = "bad-request"
    status = 400


class InvalidRecipe(RequestError):
    code = "invalid-recipe"
    status = 422


class MissingPart(RequestError):
    code = "missing-part"


class PayloadTooLarge(RequestError):
    code = "payload-too-large"
    status = 413


class IdempotencyConflict(RequestError):
    code = "idempotency-conflict"
    status = 422


class NotFound(MobileconvError):
    code = "not-found"
    status = 404


class Forbidden(MobileconvError):
    code = "forbidden"
    status = 403


class Unauthorized(MobileconvError):
    code = "unauthorized"
    status = 401


class ServiceUnavailable(MobileconvError):
    code = "unavailable"
    status = 503


class ConversionError(MobileconvError):
    """A model or recipe the engine cannot turn into artifacts; the job ends ``failed``."""

    code = "conversion-failed"
    status = 422


class InvalidModel(ConversionError):
    code = "invalid-model"


class UnsupportedRecipe(ConversionError):
    code = "unsupported-recipe"


class InputMismatch(ConversionError):
    code = "input-mismatch"


class InvalidData(ConversionError):
    code = "invalid-data"


class ExportFailed(ConversionError):
    code = "export-failed"


class FidelityMissed(ConversionError):
    code = "fidelity-target-missed"


class ResourceLimit(ConversionError):
    code = "resource-limit"


class Conflict(MobileconvError):
    """The request is valid but the job's state does not allow it (e.g. cancelling a finished
    job)."""

    code = "conflict"
    status = 409


class MethodNotAllowed(RequestError):
    code = "method-not-allowed"
    status = 405
