"""Exceptions that the command line turns into one clear line and exit status 2."""


class MedzooError(Exception):
    """Bad usage or bad input: the message says what was expected and what was received.

    Messages never hold PHI; they may hold the user's own relative paths (DESIGN.md).
    """


class InputError(MedzooError):
    """A file or folder the user gave cannot be used (missing, empty, unreadable, inconsistent)."""
