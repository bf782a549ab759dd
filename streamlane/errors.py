"""Errors a user can cause: reported as one line, without a traceback."""


class UserError(Exception):
    """A mistake in configuration, input or environment that the user can fix.

    The message names what is wrong and where; the CLI prints it on one line and
    exits with status 2.
    """
