"""Errors that reach the user as one clear paragraph, never as a traceback."""


class QSMInputError(ValueError):
    """Bad input data or metadata: the message names the file, the problem and the fix."""


class QSMUsageError(ValueError):
    """Bad or conflicting command-line usage."""
