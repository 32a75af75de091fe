class StepError(Exception):
    """A problem the user must fix (bad input, bad params). The CLI prints it without a traceback and exits 1."""
