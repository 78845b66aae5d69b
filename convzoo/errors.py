"""User-facing errors.

A ``ConvzooError`` is a mistake the user can fix (a wrong name, a missing file, a bad
config value). The CLI prints its message as one line on stderr and exits non-zero,
without a traceback unless ``--debug`` is given. Its message says what is wrong *and*
what to do about it.
"""


class ConvzooError(Exception):
    """An error caused by the user's input, reported as one line without a traceback."""
