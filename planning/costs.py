"""Planning costs: what a candidate action sequence is worth, from a world model or the simulator.

A *cost model* turns the current situation into a planner's ``cost_fn``:
``make_cost(env, observations, actions) -> cost_fn`` where ``observations`` is the episode's
observation history (dicts from the env), ``actions`` the model-space actions taken so far, and
``cost_fn(actions (N, K, A)) -> (N,)`` scores candidate sequences in model action space ([-1, 1]).

Both cost models weigh the K steps of a plan the same way (``steps``: the last one, or the mean over
all), so the oracle differs from ours only in what it knows: the true simulator and the true distance.
The settings come from the ``cost`` section of ``configs/plan.yaml`` (see ``jepa_wm.planning.experiment``).
"""

from __future__ import annotations

import os
from dataclasses import replace

import mujoco
import numpy as np
import torch
from jepa_wm.data.actions import model_to_env_actions
from mujoco import rollout as mujoco_rollout

from jepa_wm.registry import Registry

DISTANCES = ("l2", "cosine")
ORACLE_POSES = ("success", "whole")  # what the oracle's distance is measured on (``oracle_cost`` of plan.yaml)
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


# ------------------------------------------------------------------------ objectives on predicted embeddings
class LatentDistance:
    """The latent distance (``l2`` or ``cosine``) of predicted embeddings to the goal's."""

    def __init__(self, distance: str = "l2"):
        if distance not in DISTANCES:
            raise ValueError(f"unknown latent distance '{distance}' (choices: {', '.join(DISTANCES)})")
        self.distance = distance

    def __call__(self, predicted: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """predicted (N, K, T, D), goal (T, D) -> (N, K)."""
        return latent_distance(predicted, goal, self.distance)

    def describe(self) -> str:
        return f"latent {self.distance}"


class LearnedDistance:
    """Steps to the goal as a checkpoint's learned cost counts them (see ``jepa_wm.learned_cost``)."""

    def __init__(self, learned_cost):
        self.learned_cost = learned_cost

    def __call__(self, predicted: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        return self.learned_cost.distance(predicted.flatten(-2), goal.flatten())

    def describe(self) -> str:
        return f"learned {self.learned_cost.kind} distance"


class WeightedSum:
    """sum_i weight_i * objective_i / scale_i: ``scale`` puts terms of different units on one footing
    (a learned cost's scales are the mean of each distance between random frames of its data)."""

    def __init__(self, terms: list[tuple[float, object, float]]):
        self.terms = [(float(weight), objective, float(scale)) for weight, objective, scale in terms if weight]
        if not self.terms:
            raise ValueError("a weighted sum of costs needs at least one term with a weight other than 0")

    def __call__(self, predicted: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        return sum(weight * objective(predicted, goal) / scale for weight, objective, scale in self.terms)

    def describe(self) -> str:
        return " + ".join(f"{weight:g} x {objective.describe()}" for weight, objective, _ in self.terms)


# Costs a plan config can name (``cost.name``): each builds its objective from (model, the cost section). A new
# cost is a function registered here, with its settings in the ``cost`` section of configs/plan.yaml.
COSTS = Registry("planning cost", "cost.name")
AUTO = "auto"  # cost.name=auto: AUTO_WITH_LEARNED when the checkpoint carries a learned cost, else cost.distance
AUTO_WITH_LEARNED = "sum"


def _learned(model, name: str):
    learned = getattr(model, "learned_cost", None)
    if learned is None:
        raise ValueError(f"cost.name={name} needs a checkpoint with a learned cost; train one with "
                         f"jepa-wm train-cost checkpoint=..., or plan with cost.name=l2")
    return learned


COSTS.register("l2")(lambda model, cost_cfg: LatentDistance("l2"))
COSTS.register("cosine")(lambda model, cost_cfg: LatentDistance("cosine"))
COSTS.register("learned")(lambda model, cost_cfg: LearnedDistance(_learned(model, "learned")))
COSTS.register("sum")(lambda model, cost_cfg: WeightedSum([
    (cost_cfg["latent_weight"], LatentDistance(cost_cfg["distance"]), _learned(model, "sum").latent_scale),
    (cost_cfg["learned_weight"], LearnedDistance(_learned(model, "sum")), _learned(model, "sum").learned_scale)]))


TASK_COSTS = ("sum", "learned")  # what an env config's planning_cost may make cost.name=auto mean


def build_objective(model, cost_cfg, task_costs: dict | None = None) -> tuple[object, str]:
    """The objective a plan config's ``cost`` section asks for with this model, and a line saying which.

    ``task_costs`` is the task's choice for ``auto`` per kind of learned cost (its env config's ``planning_cost``,
    chosen on dev episodes, e.g. ``{decoded: learned}``): ``learned`` plans with the checkpoint's learned cost
    alone, ``sum`` (and any kind the task did not choose for) with it + the latent distance."""
    name = cost_cfg["name"]
    learned = getattr(model, "learned_cost", None)
    choices = dict(task_costs or {})
    for kind, choice in choices.items():
        if choice not in TASK_COSTS:
            raise ValueError(f"the env config's planning_cost.{kind}={choice} is not one of {', '.join(TASK_COSTS)} "
                             f"(what cost.name=auto plans with when the checkpoint's learned cost is a {kind} one)")
    if name == AUTO:
        name = choices.get(learned.kind, AUTO_WITH_LEARNED) if learned is not None else cost_cfg["distance"]
    objective = COSTS[name](model, cost_cfg)
    note = " (the checkpoint has no learned cost)" if cost_cfg["name"] == AUTO and learned is None else ""
    return objective, f"cost: {objective.describe()}{note}"


class LatentGoalCost:
    """Cost of action sequences under a world model: an objective on the predicted embeddings and the goal's.

    One rollout of the world model per candidate batch, whatever the objective (a latent distance, a learned
    distance, or a weighted sum of them). The goal is embedded in the space the predictor predicts into
    (``model.encode_target``: the EMA target encoder's when the model has one). ``steps`` weighs the horizon
    (see ``weigh_steps``); ``action_penalty`` adds that weight times the mean squared action.
    """

    def __init__(self, model, objective="l2", steps: str = "all", action_penalty: float = 0.0):
        _check_steps(steps)
        self.model, self.steps, self.action_penalty = model, steps, action_penalty
        self.objective = LatentDistance(objective) if isinstance(objective, str) else objective
        self.description = f"cost: {self.objective.describe()}"
        self.obs_key = model.cfg["obs_type"]
        self._goal_source = None
        self._goal_embedding = None

    @classmethod
    def from_config(cls, model, cost_cfg, task_costs: dict | None = None) -> "LatentGoalCost":
        """From a plan config's ``cost`` section (``name``, ``distance``, weights, ``steps``, ``action_penalty``)
        and the task's choice for ``auto`` (``build_objective``)."""
        objective, description = build_objective(model, cost_cfg, task_costs)
        cost = cls(model, objective, cost_cfg["steps"], float(cost_cfg["action_penalty"]))
        cost.description = description
        return cost

    def goal_embedding(self, goal_obs: dict) -> torch.Tensor:
        """The goal's embedding (N, D), computed once per goal."""
        goal = goal_obs[self.obs_key]
        if self._goal_source is None or not np.array_equal(self._goal_source, goal):
            with torch.no_grad():
                self._goal_embedding = self.model.encode_target(torch.as_tensor(goal)[None, None])[0, 0]
            self._goal_source = goal.copy()
        return self._goal_embedding

    def embedded_history(self, observations: list[dict], actions: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """The episode's last H observations embedded (1, H, T, D) and the model actions between them (1, H-1, A)."""
        model = self.model
        frames = np.stack([obs[self.obs_key] for obs in observations[-model.history:]])  # (H, *obs_shape)
        past = np.zeros((len(frames) - 1, model.action_dim), np.float32)  # (H-1, A)
        if len(frames) > 1 and actions:
            taken = np.asarray(actions[-(len(frames) - 1):], np.float32)
            past[len(past) - len(taken):] = taken
        with torch.no_grad():
            z_history = model.encode(torch.as_tensor(frames)[None])  # (1, H, T, D)
        return z_history, torch.as_tensor(past, device=model.device)[None]

    def make_cost(self, env, observations: list[dict], actions: list[np.ndarray]):
        z_history, past_actions = self.embedded_history(observations, actions)
        return self.cost_of_embeddings(z_history, past_actions, self.goal_embedding(env.goal_obs()))

    def cost_of_embeddings(self, z_history: torch.Tensor, past_actions: torch.Tensor, goal: torch.Tensor):
        """``cost_fn`` from embeddings: z_history (1, H, T, D), past_actions (1, H-1, A), goal (T, D)."""
        model = self.model

        def cost_fn(candidates: torch.Tensor) -> torch.Tensor:
            count = candidates.shape[0]
            predicted = model.rollout(
                z_history.expand(count, *z_history.shape[1:]), candidates.to(model.device),
                past_actions.expand(count, *past_actions.shape[1:]),
            )  # (N, K, T, D)
            cost = weigh_steps(self.objective(predicted, goal), self.steps)  # (N,)
            if self.action_penalty:
                cost = cost + self.action_penalty * candidates.pow(2).mean(dim=(1, 2)).to(cost.device)
            return cost.to(candidates.device)

        return cost_fn


class EnsembleGoalCost:
    """The mean cost of the same candidates under several world models of one task (plan.yaml ``ensemble``).

    A planner searches for the actions its model scores best, so it finds where that model's prediction is
    wrong in its favour; the models of other training seeds are rarely wrong in the same place, and their mean
    cost is harder to exploit (the argument of PETS-style model ensembles). Each member embeds its own history
    and goal and keeps its own cost (a ``sum`` cost is already divided by its model's scales, so members weigh
    alike). ``disagreement`` adds that weight times the members' standard deviation: pessimism where they
    disagree.
    """

    def __init__(self, members: list[LatentGoalCost], disagreement: float = 0.0):
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 world models; got {len(members)}")
        if disagreement < 0:
            raise ValueError(f"cost.disagreement must be >= 0 (a weight on the members' spread); got {disagreement}")
        self.members, self.disagreement = members, float(disagreement)
        self.model = members[0].model  # the one a proposer and the reports speak of
        spread = f" + {self.disagreement:g} x their standard deviation" if self.disagreement else ""
        self.description = (f"cost: mean over {len(members)} world models of "
                            f"({members[0].description.removeprefix('cost: ')}){spread}")

    def make_cost(self, env, observations: list[dict], actions: list[np.ndarray]):
        member_costs = [member.make_cost(env, observations, actions) for member in self.members]

        def cost_fn(candidates: torch.Tensor) -> torch.Tensor:
            costs = torch.stack([cost(candidates) for cost in member_costs])  # (M, N)
            total = costs.mean(dim=0)
            return total + self.disagreement * costs.std(dim=0) if self.disagreement else total

        return cost_fn


class SimulatorCost:
    """The oracle: the true simulator as the world model, and the task's own success distance as the cost.

    Candidates roll out from the env's current physics state with ``mujoco.rollout`` (C threads, no
    Python per step). The distance is measured after every model step (``frameskip`` env steps) and
    weighed over the horizon as ours is (``steps``), so with the same planner this is the ceiling a
    perfect world model could reach. Assumes the task writes actions straight to the actuators, as the
    suite's tasks do (``before_step`` sets ``data.ctrl``).

    ``pose="whole"`` measures the distance on every joint of the pose (the task's metric over all of qpos,
    hinges wrapped) instead of the success coordinates: what a cost asks for when it compares whole pictures
    (the torso's position, the finger's own angle), with perfect dynamics. Success is still the task's.
    """

    def __init__(self, frameskip: int, steps: str, threads: int | None = None, pose: str = "success"):
        _check_steps(steps)
        if pose not in ORACLE_POSES:
            raise ValueError(f"oracle_cost must be one of {', '.join(ORACLE_POSES)}; got {pose!r}")
        self.frameskip, self.steps, self.pose = frameskip, steps, pose
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
            self._criterion = env.success if self.pose == "success" else replace(env.success, geom=None, joints=None)
            self._angle_periods = self._criterion.angle_periods(model)

    def make_cost(self, env, observations: list[dict], actions: list[np.ndarray]):
        self._bind(env)
        model = self._model
        mujoco.mj_getState(model, env.physics.data.ptr, self._state, self._state_spec)
        initial_state = self._state[None].copy()
        repeats = env.action_repeat * env.physics_substeps  # physics steps per env step
        criterion = self._criterion
        goal = env.goal_coordinates if self.pose == "success" else env.goal_pose
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
            distance = criterion.distance(coordinates, goal, self._angle_periods).reshape(count, horizon)  # (N, K)
            return weigh_steps(torch.as_tensor(distance, dtype=torch.float32), self.steps).to(candidates.device)

        return cost_fn


class PolicyProposer:
    """A checkpoint's goal-conditioned policy proposing the next K model actions from the episode so far (the
    same history frames and goal embedding the latent cost uses): ~1 ms, where the planner takes tens."""

    def __init__(self, model, embedder: LatentGoalCost, horizon: int | None = None):
        if getattr(model, "policy", None) is None:
            raise ValueError("act=policy and act=policy+planner need a checkpoint with a policy; train one with "
                             "jepa-wm train-policy checkpoint=..., or plan with act=planner")
        self.model, self.embedder = model, embedder
        self.horizon = horizon or model.policy.net.horizon  # a longer plan than the policy's ends in zeros

    def __call__(self, env, observations: list[dict], actions: list[np.ndarray]) -> torch.Tensor:
        z_history, _ = self.embedder.embedded_history(observations, actions)  # (1, H, T, D)
        goal = self.embedder.goal_embedding(env.goal_obs())  # (T, D)
        with torch.no_grad():
            proposal = self.model.policy(z_history.flatten(2), goal.flatten()[None])[0][: self.horizon]  # (K', A)
        padding = proposal.new_zeros(self.horizon - len(proposal), proposal.shape[1])  # the middle of the box
        return torch.cat([proposal, padding])  # (K, A)
