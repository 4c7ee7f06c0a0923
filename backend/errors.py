"""Errors the backend reports to its callers, each with a stable code.

The code is what the add-on and scripts switch on; the message is for a person and names the
problem (which file, which frame, what was expected).
"""


class BackendError(Exception):
    code = "internal"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadInput(BackendError):
    """The caller's data is unusable: missing file, corrupt mesh, wrong counts, NaNs."""

    code = "bad_input"


class Cancelled(BackendError):
    code = "cancelled"

    def __init__(self, message: str = "cancelled by the user"):
        super().__init__(message)


class Unsupported(BackendError):
    """A feature that cannot work yet, or not with this configuration."""

    code = "unsupported"
