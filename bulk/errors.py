"""What the bulk services raise: a sentence for the person (the pages show ``str(exc)``)."""

from __future__ import annotations


class BulkError(ValueError):
    """The operation cannot do this now (input, state, size): ``message`` says why; nothing was
    changed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BulkNotAllowed(BulkError):
    """This person may not do this (role, the starter approving their own operation)."""


class PlanRefused(BulkError):
    """The input cannot make an operation (empty, too large, no such group): nothing stored."""
