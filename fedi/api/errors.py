"""Errors in Mastodon's shape: `{"error": "..."}` (and `details` for a 422)."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse


class ApiError(Exception):
    def __init__(self, status: int, error: str, *, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.details = details
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"error": self.error}
        if self.details is not None:
            body["details"] = self.details
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def not_found() -> ApiError:
    return ApiError(404, "Record not found")


def unprocessable(error: str, field: str | None = None) -> ApiError:
    """Mastodon's validation failure: 422 with a readable error and, per field, details."""
    details = {field: [{"error": "ERR_INVALID", "description": error}]} if field else None
    return ApiError(422, f"Validation failed: {error}", details=details)


def unauthorized() -> ApiError:
    return ApiError(401, "The access token is invalid",
                    headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def forbidden_scope(needed: str) -> ApiError:
    return ApiError(403, f"This action is outside the authorized scopes (needs {needed})")
