"""Loading trained world models from checkpoints, safely."""


class CheckpointError(Exception):
    """A checkpoint is missing, truncated, unsafe, or not a jepa-wm world model."""
