"""Data-collection policies: exploration that covers the reachable states of a task."""

from __future__ import annotations

import numpy as np

from jepa_wm.errors import ConfigError, did_you_mean


class UniformRandomPolicy:
    """Independent uniform actions: broad coverage of actions, but jittery, short-range motion."""

    def __init__(self, action_low: np.ndarray, action_high: np.ndarray):
        self.action_low, self.action_high = np.asarray(action_low), np.asarray(action_high)

    def reset(self, rng: np.random.Generator) -> None:
        pass

    def act(self, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(self.action_low, self.action_high).astype(np.float32)


class OrnsteinUhlenbeckPolicy:
    """Temporally correlated random actions: sustained pushes carry arms and masses across the arena.

    ``theta`` pulls the action back toward zero, ``sigma`` is the noise scale (in units of half the
    action range); the stationary std is ``sigma / sqrt(2 * theta)`` before clipping.
    """

    def __init__(self, action_low: np.ndarray, action_high: np.ndarray, theta: float = 0.15, sigma: float = 0.3):
        if theta <= 0 or sigma <= 0:
            raise ConfigError(f"policy.theta and policy.sigma of the ou policy must be > 0; got theta={theta}, sigma={sigma}")
        self.action_low, self.action_high = np.asarray(action_low), np.asarray(action_high)
        self.theta, self.sigma = theta, sigma
        self._noise = np.zeros_like(self.action_low, dtype=np.float64)

    def reset(self, rng: np.random.Generator) -> None:
        stationary_std = self.sigma / np.sqrt(2 * self.theta)
        self._noise = rng.normal(0.0, stationary_std, size=self._noise.shape)

    def act(self, rng: np.random.Generator) -> np.ndarray:
        self._noise += -self.theta * self._noise + self.sigma * rng.normal(size=self._noise.shape)
        half_range, middle = (self.action_high - self.action_low) / 2, (self.action_high + self.action_low) / 2
        return np.clip(middle + half_range * self._noise, self.action_low, self.action_high).astype(np.float32)


POLICIES = {"random": UniformRandomPolicy, "ou": OrnsteinUhlenbeckPolicy}


def make_policy(name: str, action_low, action_high, **settings):
    """Build a collection policy by name (``random`` or ``ou``)."""
    if name not in POLICIES:
        raise ConfigError(f"unknown policy.name '{name}'{did_you_mean(name, POLICIES)} (choices: {', '.join(sorted(POLICIES))})")
    return POLICIES[name](action_low, action_high, **settings)
