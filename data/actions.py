"""The action convention, in one place.

The env acts in its own box ``[low, high]``; world models and planners act in ``[-1, 1]``. One model
step covers ``frameskip`` env steps, and its action is their env actions concatenated in time order:
a model action of size ``frameskip * A`` is ``frameskip`` consecutive env actions of size ``A``.
"""

from __future__ import annotations

import numpy as np


def to_model_range(actions: np.ndarray, low, high, out: np.ndarray | None = None) -> np.ndarray:
    """Env actions (..., A) in [low, high] -> float32 (..., A) in [-1, 1].

    With ``out`` (which may be ``actions`` itself) the same float32 operations run in place.
    """
    low, high = np.asarray(low, np.float32), np.asarray(high, np.float32)
    if out is None:
        return (2.0 * (actions - low) / (high - low) - 1.0).astype(np.float32)
    np.subtract(actions, low, out=out)
    out *= np.float32(2.0)
    out /= high - low
    out -= np.float32(1.0)
    return out


def to_env_range(actions: np.ndarray, low, high) -> np.ndarray:
    """Model actions (..., A) in [-1, 1] -> (..., A) in [low, high] (float64, what MuJoCo takes)."""
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    return low + (np.asarray(actions, np.float64) + 1.0) / 2.0 * (high - low)


def split_frameskip(model_actions: np.ndarray, frameskip: int) -> np.ndarray:
    """Model actions (..., frameskip * A) -> the env actions they stand for, (..., frameskip, A)."""
    model_actions = np.asarray(model_actions)
    return model_actions.reshape(*model_actions.shape[:-1], frameskip, model_actions.shape[-1] // frameskip)


def model_to_env_actions(model_actions: np.ndarray, low, high, frameskip: int) -> np.ndarray:
    """Model actions (..., frameskip * A) in [-1, 1] -> env actions (..., frameskip, A) in the env's box."""
    return to_env_range(split_frameskip(model_actions, frameskip), low, high)
