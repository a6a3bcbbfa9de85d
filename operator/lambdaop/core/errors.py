"""Named errors. Each maps to one HTTP status (see `STATUS`) and one CLI exit code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Problem:
    """One thing wrong with an input: where it is and what was expected."""

    message: str
    field: str | None = None
    file: str | None = None
    line: int | None = None
    column: int | None = None
    document: int | None = None

    def where(self) -> str:
        parts = []
        if self.file:
            place = self.file
            if self.line is not None:
                place += f":{self.line}"
                if self.column is not None:
                    place += f":{self.column}"
            parts.append(place)
        elif self.line is not None:
            parts.append(f"line {self.line}")
        if self.document is not None and not self.file:
            parts.append(f"document {self.document + 1}")  # people count documents from 1
        if self.field:
            parts.append(self.field)
        return ": ".join(parts)

    def __str__(self) -> str:
        where = self.where()
        return f"{where}: {self.message}" if where else self.message

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class LambdaopError(Exception):
    code = "error"

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems: list[Problem] = problems or []


class SpecInvalid(LambdaopError):
    code = "invalid"

    def __str__(self) -> str:
        if not self.problems:
            return self.message
        return self.message + "\n" + "\n".join(f"  {p}" for p in self.problems)


class BadRequest(LambdaopError):
    code = "bad_request"


class Unauthorized(LambdaopError):
    code = "unauthorized"


class Forbidden(LambdaopError):
    code = "forbidden"


class TooManyRequests(LambdaopError):
    code = "too_many_requests"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PayloadTooLarge(LambdaopError):
    code = "too_large"


class UnsupportedMediaType(LambdaopError):
    code = "unsupported_media_type"


class NotFound(LambdaopError):
    code = "not_found"


class Conflict(LambdaopError):
    code = "conflict"


class Gone(LambdaopError):
    """What was asked for has ended (a callback for a wait that timed out)."""

    code = "gone"


class StoreUnavailable(LambdaopError):
    """The store does not answer (or cannot take a write) now; the request may be sent again."""

    code = "store_unavailable"

    def __init__(self, message: str, retry_after: int = 2) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InsufficientStorage(LambdaopError):
    """The state folder's disk is (nearly) full: no new work is taken until space is freed."""

    code = "insufficient_storage"

    def __init__(self, message: str, retry_after: int = 10) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StartupFailed(LambdaopError):
    code = "startup_failed"


class StateDirLocked(LambdaopError):
    code = "state_dir_locked"


STATUS: dict[type[LambdaopError], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    TooManyRequests: 429,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    NotFound: 404,
    Conflict: 409,
    Gone: 410,
    SpecInvalid: 422,
    StoreUnavailable: 503,
    InsufficientStorage: 507,
}
