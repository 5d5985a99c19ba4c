"""Errors a user can fix; entry points print their message instead of a traceback."""


class ConfigError(ValueError):
    """A config file or override is invalid; the message says what would be valid."""


class CheckpointError(Exception):
    """A checkpoint is missing, truncated, unsafe, or not a jepa-wm world model."""


class NonFiniteLossError(RuntimeError):
    """Training produced NaN/inf: continuing would only write a broken checkpoint."""
