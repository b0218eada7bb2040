"""Errors services raise for users: each says what is wrong and what to do.

Views turn them into form errors or messages, the API into JSON with the matching status code;
never into a 500.
"""


class ServiceError(Exception):
    """The request cannot be carried out as asked (bad input, wrong state)."""

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None, code: str = "invalid"):
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code


class NotFound(ServiceError):
    status_code = 404

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message, field=field, code="not_found")


class Conflict(ServiceError):
    """The target is busy or already in a conflicting state (e.g. a VM with an active job)."""

    status_code = 409

    def __init__(self, message: str, *, field: str | None = None, code: str = "conflict"):
        super().__init__(message, field=field, code=code)


class Forbidden(ServiceError):
    status_code = 403

    def __init__(self, message: str = "You do not have permission to do that."):
        super().__init__(message, code="forbidden")
