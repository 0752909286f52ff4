"""Errors a user can cause.

Everything a user can get wrong (a bad path, a malformed file, an invalid arch string,
an impossible option) raises a `UserError` subclass. The CLI prints the message on one
line and exits with status 2, so the message itself must say what was wrong and what to
do about it; a traceback is reserved for bugs in edgenas.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix; shown as one line, exit status 2."""

    exit_code = 2


class DataError(UserError):
    """A dataset file or folder is missing, malformed or inconsistent."""


class ArchError(UserError):
    """An architecture string or description is invalid."""


class ConfigError(UserError):
    """A configuration file, device profile or option value is invalid."""


class ResumeError(UserError):
    """A run directory cannot be resumed (missing, or made by another command)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a resumable command; `hint` tells the user where the work is and how to go on."""

    def __init__(self, hint: str) -> None:
        super().__init__(hint)
        self.hint = hint
