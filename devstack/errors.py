"""The one exception type the CLI turns into a single `error: ...` line."""


class StackError(Exception):
    """Starting, stopping or checking a component failed; the message says what to do next."""
