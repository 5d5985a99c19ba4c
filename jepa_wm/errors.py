"""Errors a user can fix; entry points print their message instead of a traceback."""

from __future__ import annotations

import difflib
from typing import Iterable


class ConfigError(ValueError):
    """A config file or override is invalid; the message says what would be valid."""


class CheckpointError(Exception):
    """A checkpoint is missing, truncated, unsafe, or not a jepa-wm world model."""


class TrainingTerminated(Exception):
    """Training was stopped by SIGTERM after saving its state; the message says how to continue."""


class NonFiniteLossError(RuntimeError):
    """Training produced NaN/inf: continuing would only write a broken checkpoint."""


def first_line(error) -> str:
    """The first line of an error's message ("" for none): libraries explain some failures over many lines (HDF5,
    OmegaConf, Hugging Face), and a user's mistake is reported in one."""
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


def did_you_mean(name: str, choices: Iterable[str], cutoff: float = 0.5) -> str:
    """``"; did you mean 'cem'?"`` for the choice nearest to ``name``, or ``""`` when none is close.

    The one home of the hint every "unknown X" error carries.
    """
    close = difflib.get_close_matches(str(name), [str(choice) for choice in choices], n=1, cutoff=cutoff)
    return f"; did you mean '{close[0]}'?" if close else ""
