"""Planning costs: what a candidate action sequence is worth, from a world model or the simulator.

A *cost model* turns the current situation into a planner's ``cost_fn``:
``make_cost(env, observations, actions) -> cost_fn`` where ``observations`` is the episode's
observation history (dicts from the env), ``actions`` the model-space actions taken so far, and
``cost_fn(actions (N, K, A)) -> (N,)`` scores candidate sequences in model action space ([-1, 1]).
"""

from __future__ import annotations

import os

import mujoco
import numpy as np
import torch
from mujoco import rollout as mujoco_rollout

DISTANCES = ("l2", "cosine")
STEP_WEIGHTINGS = ("final", "all")


def latent_distance(predicted: torch.Tensor, goal: torch.Tensor, distance: str) -> torch.Tensor:
    """Distance of predicted embeddings (N, K, T, D) to a goal embedding (T, D) -> (N, K).

    ``l2`` is the mean squared error over tokens and dimensions (DINO-WM's planning cost);
    ``cosine`` is 1 - cosine similarity of the flattened embeddings.
    """
    if distance == "l2":
        return (predicted - goal).pow(2).mean(dim=(-2, -1))
    flat_predicted, flat_goal = predicted.flatten(-2), goal.flatten()
    return 1.0 - torch.nn.functional.cosine_similarity(flat_predicted, flat_goal.expand_as(flat_predicted), dim=-1)


class LatentGoalCost:
    """Cost of action sequences under a world model: predicted embeddings vs the goal embedding.

    ``steps="final"`` scores only the last predicted step; ``"all"`` averages over every step, which
    rewards getting there sooner. ``action_penalty`` adds that weight times the mean squared action.
    """

    def __init__(self, model, distance: str = "l2", steps: str = "final", action_penalty: float = 0.0):
        if distance not in DISTANCES:
            raise ValueError(f"unknown latent distance '{distance}' (choices: {', '.join(DISTANCES)})")
        if steps not in STEP_WEIGHTINGS:
            raise ValueError(f"unknown step weighting '{steps}' (choices: {', '.join(STEP_WEIGHTINGS)})")
        self.model, self.distance, self.steps, self.action_penalty = model, distance, steps, action_penalty
        self.obs_key = model.cfg["obs_type"]
        self._goal_source = None
        self._goal_embedding = None

    def goal_embedding(self, goal_obs: dict) -> torch.Tensor:
        """The goal's embedding (N, D), computed once per goal."""
        goal = goal_obs[self.obs_key]
        if self._goal_source is None or not np.array_equal(self._goal_source, goal):
            with torch.no_grad():
                self._goal_embedding = self.model.encode(torch.as_tensor(goal)[None, None])[0, 0]
            self._goal_source = goal.copy()
        return self._goal_embedding

    def make_cost(self, env, observations: list[dict], actions: list[np.ndarray]):
        model = self.model
        history = model.history
        frames = np.stack([obs[self.obs_key] for obs in observations[-history:]])  # (H, *obs_shape)
        past = np.zeros((len(frames) - 1, model.action_dim), np.float32)
        if len(frames) > 1 and actions:
            taken = np.asarray(actions[-(len(frames) - 1):], np.float32)
            past[len(past) - len(taken):] = taken
        goal = self.goal_embedding(env.goal_obs())
        with torch.no_grad():
            z_history = model.encode(torch.as_tensor(frames)[None])  # (1, H, N, D)
        past_actions = torch.as_tensor(past, device=model.device)[None]  # (1, H-1, A)

        def cost_fn(candidates: torch.Tensor) -> torch.Tensor:
            count = candidates.shape[0]
            predicted = model.rollout(
                z_history.expand(count, *z_history.shape[1:]), candidates.to(model.device),
                past_actions.expand(count, *past_actions.shape[1:]),
            )  # (N, K, T, D)
            per_step = latent_distance(predicted, goal, self.distance)  # (N, K)
            cost = per_step[:, -1] if self.steps == "final" else per_step.mean(dim=1)
            if self.action_penalty:
                cost = cost + self.action_penalty * candidates.pow(2).mean(dim=(1, 2)).to(cost.device)
            return cost.to(candidates.device)

        return cost_fn


class SimulatorCost:
    """The oracle: the true simulator as the world model, cost = true distance to the goal at the end.

    Candidates roll out from the env's current physics state with ``mujoco.rollout`` (C threads, no
    Python per step), so this is a ceiling for what a perfect world model could reach with the same
    planner and budget. Assumes the task writes actions straight to the actuators, as the suite's
    reacher and point_mass tasks do.
    """

    def __init__(self, frameskip: int = 1, threads: int | None = None):
        self.frameskip = frameskip
        self.threads = threads or min(8, os.cpu_count() or 1)
        self._model = None

    def _bind(self, env) -> None:
        model = env.physics.model.ptr
        if self._model is not model:
            self._model = model
            self._datas = [mujoco.MjData(model) for _ in range(self.threads)]
            self._scratch = mujoco.MjData(model)
            self._state_spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
            self._state = np.empty(mujoco.mj_stateSize(model, self._state_spec))

    def make_cost(self, env, observations: list[dict], actions: list[np.ndarray]):
        self._bind(env)
        model = self._model
        mujoco.mj_getState(model, env.physics.data.ptr, self._state, self._state_spec)
        initial_state = self._state[None].copy()
        low, high = env.action_low, env.action_high
        repeats = env.action_repeat * env.physics_substeps
        goal = env.goal_position
        nq = model.nq

        def cost_fn(candidates: torch.Tensor) -> torch.Tensor:
            count, horizon = candidates.shape[:2]
            normalized = candidates.detach().cpu().double().numpy().reshape(count, horizon * self.frameskip, -1)
            controls = low + (normalized + 1.0) / 2.0 * (high - low)  # (N, K*fs, A) env actions
            controls = np.repeat(controls, repeats, axis=1)  # one row per physics step
            states, _ = mujoco_rollout.rollout(model, self._datas, initial_state, controls)
            final_qpos = states[:, -1, 1 : 1 + nq]  # FULLPHYSICS state = (time, qpos, qvel, ...)
            positions = env.goal_task.position.of_qpos_batch(model, self._scratch, final_qpos)
            distance = np.linalg.norm(positions - goal, axis=-1)
            return torch.as_tensor(distance, dtype=torch.float32, device=candidates.device)

        return cost_fn
