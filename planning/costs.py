"""Planning costs: what a candidate action sequence is worth, from a world model or the simulator.

A *cost model* turns the current situation into a planner's ``cost_fn``:
``make_cost(env, observations, actions) -> cost_fn`` where ``observations`` is the episode's
observation history (dicts from the env), ``actions`` the model-space actions taken so far, and
``cost_fn(actions (N, K, A)) -> (N,)`` scores candidate sequences in model action space ([-1, 1]).

Both cost models weigh the K steps of a plan the same way (``steps``: the last one, or the mean over
all), so the oracle differs from ours only in what it knows: the true simulator and the true distance.
The settings come from the ``cost`` section of ``configs/plan.yaml`` (see ``planning.experiment``).
"""

from __future__ import annotations

import os

import mujoco
import numpy as np
import torch
from mujoco import rollout as mujoco_rollout

from data.actions import model_to_env_actions

DISTANCES = ("l2", "cosine")
STEP_WEIGHTINGS = ("final", "all")


def _check_steps(steps: str) -> None:
    if steps not in STEP_WEIGHTINGS:
        raise ValueError(f"unknown step weighting '{steps}' (choices: {', '.join(STEP_WEIGHTINGS)})")


def weigh_steps(per_step: torch.Tensor, steps: str) -> torch.Tensor:
    """Per-step costs (N, K) -> (N,): the last step's, or the mean over the horizon (sooner is better)."""
    return per_step[:, -1] if steps == "final" else per_step.mean(dim=1)


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

    The goal is embedded in the space the predictor predicts into (``model.encode_target``: the EMA
    target encoder's when the model has one). ``steps`` weighs the horizon (see ``weigh_steps``);
    ``action_penalty`` adds that weight times the mean squared action.
    """

    def __init__(self, model, distance: str, steps: str, action_penalty: float = 0.0):
        if distance not in DISTANCES:
            raise ValueError(f"unknown latent distance '{distance}' (choices: {', '.join(DISTANCES)})")
        _check_steps(steps)
        self.model, self.distance, self.steps, self.action_penalty = model, distance, steps, action_penalty
        self.obs_key = model.cfg["obs_type"]
        self._goal_source = None
        self._goal_embedding = None

    @classmethod
    def from_config(cls, model, cost_cfg) -> "LatentGoalCost":
        """From a plan config's ``cost`` section (``distance``, ``steps``, ``action_penalty``)."""
        return cls(model, cost_cfg["distance"], cost_cfg["steps"], float(cost_cfg["action_penalty"]))

    def goal_embedding(self, goal_obs: dict) -> torch.Tensor:
        """The goal's embedding (N, D), computed once per goal."""
        goal = goal_obs[self.obs_key]
        if self._goal_source is None or not np.array_equal(self._goal_source, goal):
            with torch.no_grad():
                self._goal_embedding = self.model.encode_target(torch.as_tensor(goal)[None, None])[0, 0]
            self._goal_source = goal.copy()
        return self._goal_embedding

    def make_cost(self, env, observations: list[dict], actions: list[np.ndarray]):
        model = self.model
        frames = np.stack([obs[self.obs_key] for obs in observations[-model.history:]])  # (H, *obs_shape)
        past = np.zeros((len(frames) - 1, model.action_dim), np.float32)  # (H-1, A)
        if len(frames) > 1 and actions:
            taken = np.asarray(actions[-(len(frames) - 1):], np.float32)
            past[len(past) - len(taken):] = taken
        goal = self.goal_embedding(env.goal_obs())  # (T, D)
        with torch.no_grad():
            z_history = model.encode(torch.as_tensor(frames)[None])  # (1, H, T, D)
        past_actions = torch.as_tensor(past, device=model.device)[None]  # (1, H-1, A)

        def cost_fn(candidates: torch.Tensor) -> torch.Tensor:
            count = candidates.shape[0]
            predicted = model.rollout(
                z_history.expand(count, *z_history.shape[1:]), candidates.to(model.device),
                past_actions.expand(count, *past_actions.shape[1:]),
            )  # (N, K, T, D)
            cost = weigh_steps(latent_distance(predicted, goal, self.distance), self.steps)  # (N,)
            if self.action_penalty:
                cost = cost + self.action_penalty * candidates.pow(2).mean(dim=(1, 2)).to(cost.device)
            return cost.to(candidates.device)

        return cost_fn


class SimulatorCost:
    """The oracle: the true simulator as the world model, and the task's own success distance as the cost.

    Candidates roll out from the env's current physics state with ``mujoco.rollout`` (C threads, no
    Python per step). The distance is measured after every model step (``frameskip`` env steps) and
    weighed over the horizon as ours is (``steps``), so with the same planner this is the ceiling a
    perfect world model could reach. Assumes the task writes actions straight to the actuators, as the
    suite's tasks do (``before_step`` sets ``data.ctrl``).
    """

    def __init__(self, frameskip: int, steps: str, threads: int | None = None):
        _check_steps(steps)
        self.frameskip, self.steps = frameskip, steps
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
            self._hinge = env.success.hinge_mask(model)

    def make_cost(self, env, observations: list[dict], actions: list[np.ndarray]):
        self._bind(env)
        model = self._model
        mujoco.mj_getState(model, env.physics.data.ptr, self._state, self._state_spec)
        initial_state = self._state[None].copy()
        repeats = env.action_repeat * env.physics_substeps  # physics steps per env step
        criterion, goal = env.success, env.goal_coordinates
        nq = model.nq

        def cost_fn(candidates: torch.Tensor) -> torch.Tensor:
            count, horizon = candidates.shape[:2]
            controls = model_to_env_actions(candidates.detach().cpu().double().numpy(), env.action_low,
                                            env.action_high, self.frameskip)  # (N, K, fs, A)
            controls = np.repeat(controls.reshape(count, horizon * self.frameskip, -1), repeats, axis=1)
            states, _ = mujoco_rollout.rollout(model, self._datas, initial_state, controls)  # (N, K*fs*r, S)
            step_ends = (np.arange(horizon) + 1) * self.frameskip * repeats - 1  # last physics step of each model step
            qpos = states[:, step_ends, 1 : 1 + nq]  # FULLPHYSICS state = (time, qpos, qvel, ...)
            coordinates = criterion.coordinates_of_qpos(model, self._scratch, qpos.reshape(count * horizon, nq))
            distance = criterion.distance(coordinates, goal, self._hinge).reshape(count, horizon)  # (N, K)
            return weigh_steps(torch.as_tensor(distance, dtype=torch.float32), self.steps).to(candidates.device)

        return cost_fn
