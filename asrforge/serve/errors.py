"""Errors as OpenAI's API sends them: ``{"error": {"message", "type", "param", "code"}}`` with the right status.

The official clients raise their exception by status (400 ``BadRequestError``, 401 ``AuthenticationError``,
404 ``NotFoundError``, 413, 429 ``RateLimitError``, 503) and retry only what may succeed later: every error
that resending cannot fix carries ``x-should-retry: false``, so a client does not upload a long file three times.
"""

from __future__ import annotations

# statuses a client may retry as they are: the server was busy or not ready
RETRIABLE = {429, 503}


class ApiError(Exception):
    """An answer other than success: ``status``, OpenAI's ``type``, the form field at fault and a short code."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or ("server_error" if status >= 500 else "invalid_request_error")
        self.headers = dict(headers or {})

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.status not in RETRIABLE:
            headers["x-should-retry"] = "false"
        return headers


def bad_request(message: str, param: str | None = None, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, param, code)
