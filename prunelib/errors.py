"""The one exception type users need to catch: every bad input raises a subclass."""


class PrunelibError(ValueError):
    """Bad input or a state prunelib refuses to continue from; the message says what to do."""


class DataNotFoundError(PrunelibError, FileNotFoundError):
    """A data set is neither in the local data directory nor reachable on the hub."""


class UnsupportedModelError(PrunelibError):
    """The model's architecture has no known block layout."""


class NonFiniteActivationError(PrunelibError):
    """Calibration activations reaching a linear layer contain NaN or inf."""
