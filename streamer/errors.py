"""Errors that reach the user."""


class CliError(Exception):
    """A user-facing error: the CLI prints it as one line and exits with status 2.

    The message names the bad input and what to do about it.
    """
