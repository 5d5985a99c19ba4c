"""Controllers that act in a goal-reaching env: model-predictive control and the random floor."""

from __future__ import annotations

import time

import numpy as np
import torch
from jepa_wm.data.actions import model_to_env_actions


class MPCController:
    """Receding-horizon control: plan ``horizon`` model steps, execute ``replan_every``, replan.

    Each replan warm-starts the planner from the previous plan shifted by the steps executed, padded
    with the middle of the planner's action box. ``planning_seconds`` records every planner call.
    """

    def __init__(self, planner, cost_model, replan_every: int = 1, frameskip: int = 1):
        if not 1 <= replan_every <= planner.horizon:
            raise ValueError(f"replan_every must be in [1, horizon={planner.horizon}]; got {replan_every}")
        self.planner, self.cost_model = planner, cost_model
        self.replan_every, self.frameskip = replan_every, frameskip
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """Forget the last episode; a seed makes the planner's sampling repeatable per episode."""
        if seed is not None:
            self.planner.generator.manual_seed(int(seed))
        self._plan: torch.Tensor | None = None  # (K, A) in model action space
        self._queue: list[np.ndarray] = []  # env actions left to execute from the current plan
        self._executed = 0
        self.model_actions: list[np.ndarray] = []
        self.observations: list[dict] = []
        self.planning_seconds: list[float] = []

    def act(self, env, obs: dict) -> np.ndarray:
        """The next env action; replans when the executed part of the plan is used up."""
        if not self._queue:
            self.observations.append(obs)
            if self._plan is None or self._executed >= self.replan_every:
                self._replan(env)
            model_action = self._plan[self._executed].cpu().numpy()
            self._executed += 1
            self.model_actions.append(model_action)
            self._queue = list(model_to_env_actions(model_action, env.action_low, env.action_high, self.frameskip))
        return self._queue.pop(0)

    def _replan(self, env) -> None:
        init = None
        if self._plan is not None:
            shifted = self._plan[self._executed:]
            padding = self.planner.action_middle.to(shifted).expand(self._executed, -1)  # (executed, A)
            init = torch.cat([shifted, padding], dim=0)
        cost_fn = self.cost_model.make_cost(env, self.observations, self.model_actions)
        start = time.perf_counter()
        self._plan = self.planner.plan(cost_fn, init=init).actions
        self.planning_seconds.append(time.perf_counter() - start)
        self._executed = 0


class RandomController:
    """Uniform random actions: the floor any world model must beat."""

    def __init__(self):
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self.planning_seconds: list[float] = []

    def act(self, env, obs: dict) -> np.ndarray:
        return self.rng.uniform(env.action_low, env.action_high)
