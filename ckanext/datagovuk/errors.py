class OperatorError(Exception):
    """A failure an operator can act on: the CLI prints its message as one
    line and exits non-zero, with no traceback."""

    exit_code = 1
