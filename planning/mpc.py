"""Controllers that act in a goal-reaching env: model-predictive control and the random floor."""

from __future__ import annotations

import time

import numpy as np
import torch
from jepa_wm.data.actions import model_to_env_actions


class MPCController:
    """Receding-horizon control: plan ``horizon`` model steps, execute ``replan_every``, replan.

    Each replan warm-starts the planner from the previous plan shifted by the steps executed, padded
    with the middle of the planner's action box. With a ``proposer`` (a goal-conditioned policy), its
    proposal is the warm start instead, so the planner samples around it and holds it among its candidates
    (act=policy+planner); with a proposer and no planner, the proposal is the plan (act=policy).
    ``planning_seconds`` records the time of every decision.
    """

    def __init__(self, planner, cost_model, replan_every: int = 1, frameskip: int = 1, proposer=None):
        if planner is None and proposer is None:
            raise ValueError("a controller needs a planner, a proposer, or both")
        horizon = planner.horizon if planner is not None else proposer.horizon
        if not 1 <= replan_every <= horizon:
            raise ValueError(f"replan_every must be in [1, horizon={horizon}]; got {replan_every}")
        self.planner, self.cost_model, self.proposer = planner, cost_model, proposer
        self.replan_every, self.frameskip = replan_every, frameskip
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """Forget the last episode; a seed makes the planner's sampling repeatable per episode."""
        if seed is not None and self.planner is not None:
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
        start = time.perf_counter()
        init = None
        if self.proposer is not None:
            init = self.proposer(env, self.observations, self.model_actions)  # (K, A)
        elif self._plan is not None:
            shifted = self._plan[self._executed:]
            padding = self.planner.action_middle.to(shifted).expand(self._executed, -1)  # (executed, A)
            init = torch.cat([shifted, padding], dim=0)
        if self.planner is None:
            self._plan = init
        else:
            cost_fn = self.cost_model.make_cost(env, self.observations, self.model_actions)
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
