"""A goal-conditioned policy over embeddings: the fast system beside the planner.

``pi(z history, z goal) -> a block of K model actions`` acts in about a millisecond, where the planner takes tens.
It learns from the world model's own reward-free data, over its frozen embeddings (no pixels):

- ``gcbc``: goal-conditioned behaviour cloning with hindsight relabelling: the goal is a later frame of the same
  episode, the target the K model actions the data took from there (Ghosh et al. 2019, GCSL; LeWM's users'
  inverse-dynamics policy);
- ``distill``: the planner's own plans (its K-step sequence toward relabelled goals, from dataset states),
  regressed the same way: a policy that imitates the slow system.

A ``GoalPolicy`` is stored in the checkpoint as tensors and plain values (loads with ``weights_only``); the
planner's ``act=policy`` uses it alone, ``act=policy+planner`` seeds the planner with its proposal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from jepa_wm.layers import mlp
from jepa_wm.heads import FAMILIES, HeadFamily, HeadSettings, HeadTrainer, StoredHead
from jepa_wm.registry import Registry

# Policies by kind (configs/policy/<kind>.yaml holds the settings): a kind says where the training targets come
# from, ``targets(model, examples, settings, progress, seed)`` -> (M, K, A) for the examples' states and goals, and
# ``held_out_limit``, the most held-out examples it labels (None: all).
POLICY_TARGETS = Registry("policy", "policy=KIND, a file of configs/policy/")


@POLICY_TARGETS.register("gcbc")
class DataActions:
    """The actions the data took (hindsight-relabelled behaviour cloning)."""

    held_out_limit = None

    @staticmethod
    def targets(model, examples: "PolicyExamples", settings, progress: bool = True, seed: int = 0) -> torch.Tensor:
        return examples.actions


@POLICY_TARGETS.register("distill")
class PlannerPlans:
    """The planner's own K-step plans from the same states toward the same goals (configs/plan.yaml's planner,
    horizon and cost): a policy that imitates the slow system."""

    held_out_limit = 200  # held-out examples: each is a planner call

    @staticmethod
    def targets(model, examples: "PolicyExamples", settings, progress: bool = True, seed: int = 0) -> torch.Tensor:
        return planner_labels(model, examples, len(examples.goal), seed=seed, progress=progress)


GOAL_RELABELLING = ("block", "future")


@dataclass
class PolicySettings(HeadSettings):
    """What ``PolicyTrainer`` does; ``configs/policy/<kind>.yaml`` holds the defaults and says what each is."""

    labels: int = 20000    # relabelled examples (distill: the planner's calls)
    goal: str = "block"    # block: the goal is the frame the K-step block ends on | future: any later frame

    family: ClassVar[Registry] = POLICY_TARGETS
    what: ClassVar[str] = "policy"

    def __post_init__(self):
        super().__post_init__()
        if self.labels < 1:
            raise ValueError(f"policy.labels must be >= 1; got {self.labels}")
        if self.goal not in GOAL_RELABELLING:
            raise ValueError(f"policy.goal must be one of {', '.join(GOAL_RELABELLING)}; got {self.goal!r}")

    @classmethod
    def from_config(cls, cfg, **changes) -> "PolicySettings":
        return cls(**cls.fields_of(cfg, **changes))


def default_policy_settings(kind: str = "gcbc", **changes) -> PolicySettings:
    from jepa_wm.config import load_group, to_dict

    return PolicySettings.from_config(to_dict(load_group("policy", kind)), **changes)


class GoalPolicyNet(nn.Module):
    """MLP: (history of H embeddings (B, H, F), goal embedding (B, F)) -> K model actions (B, K, A) in [-1, 1]."""

    def __init__(self, features: int, history: int, horizon: int, action_dim: int, hidden_dim: int, depth: int):
        super().__init__()
        self.history, self.horizon, self.action_dim = history, horizon, action_dim
        self.net = mlp((history + 1) * features, hidden_dim, horizon * action_dim, depth)

    def forward(self, z_history: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        x = torch.cat([(z_history - goal[:, None]).flatten(1), goal], dim=-1)  # where the goal is, seen from each frame
        return torch.tanh(self.net(x)).view(-1, self.horizon, self.action_dim)


@dataclass
class GoalPolicy(StoredHead):
    """A trained policy with its input normalisation (``input_mean`` / ``input_std`` over flattened embeddings)."""

    def __call__(self, z_history: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """z_history (B, H, F) -> (B, K, A): the last ``history`` frames are used; fewer (the start of an episode)
        are padded with the first, as in training."""
        missing = self.net.history - z_history.shape[1]
        if missing > 0:
            z_history = torch.cat([z_history[:, :1].expand(-1, missing, -1), z_history], dim=1)
        z_history = z_history[:, -self.net.history:]
        return self.net(self.normalise(z_history), self.normalise(goal.to(z_history)))

    def extra_entries(self) -> dict:
        net = self.net
        return {"shape": {"features": int(self.input_mean.shape[0]), "history": net.history, "horizon": net.horizon,
                          "action_dim": net.action_dim}}

    @staticmethod
    def settings_class(record: dict) -> PolicySettings:
        return PolicySettings.from_config(record)

    @classmethod
    def rebuild(cls, settings, entry: dict) -> nn.Module:
        shape = entry["shape"]
        return GoalPolicyNet(shape["features"], shape["history"], shape["horizon"], shape["action_dim"],
                             settings.hidden_dim, settings.depth)

    @classmethod
    def from_entry(cls, entry: dict, net: nn.Module) -> "GoalPolicy":
        return cls(entry["kind"], net, entry["input_mean"], entry["input_std"], dict(entry["settings"]),
                   dict(entry.get("metrics", {})))

    @staticmethod
    def entry_problem(entry: dict, model) -> str | None:
        action_dim = int(entry["shape"]["action_dim"])
        if action_dim != model.action_dim:
            return f"outputs {action_dim} action dimensions, but this model's task has {model.action_dim} (another task's policy)"
        return None


FAMILIES.register("policy")(HeadFamily("policy", "policy", "policy", "train-policy", POLICY_TARGETS, PolicySettings,
                                       GoalPolicy))


@dataclass
class PolicyExamples:
    """Training examples: inputs z history (M, H, F) and goal (M, F), targets (M, K, A) in [-1, 1], and the model
    actions taken between the history frames (M, H-1, A) (what a planner's rollout from there needs)."""

    z_history: torch.Tensor
    goal: torch.Tensor
    actions: torch.Tensor
    past_actions: torch.Tensor


def relabelled_examples(embeddings: torch.Tensor, goal_embeddings: torch.Tensor, actions: torch.Tensor, count: int,
                        history: int, horizon: int, frameskip: int, generator: torch.Generator,
                        goal: str = "future") -> PolicyExamples:
    """``count`` hindsight-relabelled examples from embedded episodes.

    embeddings (E, T+1, F) as the model encodes history frames, goal_embeddings (E, T+1, F) as it embeds goals,
    actions (E, T, A_env) in [-1, 1]. From step t the history is the frames t - frameskip * (H-1) ... t (the first
    frame repeated before the episode starts), the target the K model actions from t (K * frameskip env steps,
    each model action the frameskip env actions concatenated), the goal the frame the block ends on (``block``:
    the K-step inverse dynamics, what the block's actions determine) or a frame uniformly later (``future``).
    """
    count_episodes, frames = embeddings.shape[:2]
    span = horizon * frameskip
    if frames - 1 < span + 1:
        raise ValueError(f"episodes of {frames - 1} steps are too short for {horizon} model steps of frameskip {frameskip}")
    episode = (torch.rand(count, generator=generator) * count_episodes).long()
    start = (torch.rand(count, generator=generator) * (frames - 1 - span)).long()  # (M,)
    offset = (torch.rand(count, generator=generator) * (frames - start - span)).long() + span  # at or after the block
    goal_time = (start + (offset if goal == "future" else span)).clamp(max=frames - 1)
    times = (start[:, None] - frameskip * torch.arange(history - 1, -1, -1)[None]).clamp(min=0)  # (M, H)
    z_history = embeddings[episode[:, None], times]  # (M, H, F)
    def model_actions(first: torch.Tensor, blocks: int) -> torch.Tensor:
        """(M, blocks, fs*A_env): the env actions from ``first`` (M,), frameskip at a time; zeros before step 0."""
        steps = first[:, None] + torch.arange(blocks * frameskip)[None]  # (M, blocks*fs)
        taken = actions[episode[:, None], steps.clamp(min=0)] * (steps >= 0)[..., None]
        return taken.reshape(count, blocks, frameskip * actions.shape[-1])

    block = model_actions(start, horizon)  # (M, K, A)
    past = model_actions(start - frameskip * (history - 1), history - 1)  # (M, H-1, A)
    return PolicyExamples(z_history, goal_embeddings[episode, goal_time], block, past)


class PolicyTrainer(HeadTrainer):
    """Regresses a policy on fixed examples (see ``HeadTrainer``: a killed training resumes)."""

    def __init__(self, examples: PolicyExamples, settings: PolicySettings):
        self.examples = examples
        flat = torch.cat([examples.z_history.flatten(0, 1), examples.goal])
        self.mean, self.std = flat.mean(0), flat.std(0).clamp_min(1e-6)
        history, horizon, action_dim = examples.z_history.shape[1], *examples.actions.shape[1:]
        self.start(settings, lambda: GoalPolicyNet(flat.shape[1], history, horizon, action_dim, settings.hidden_dim,
                                                   settings.depth))

    def examples_loss(self, examples: PolicyExamples, index: torch.Tensor) -> torch.Tensor:
        z_history = (examples.z_history[index] - self.mean) / self.std
        goal = (examples.goal[index] - self.mean) / self.std
        return nn.functional.mse_loss(self.net(z_history, goal), examples.actions[index])

    def loss(self) -> torch.Tensor:
        index = (torch.rand(self.settings.batch_size, generator=self.generator) * len(self.examples.goal)).long()
        return self.examples_loss(self.examples, index)

    def result(self, validation: PolicyExamples | None = None) -> GoalPolicy:
        """The trained policy; on held-out ``validation`` examples its error, beside the error of always
        proposing zero (the middle of the action box)."""
        net = GoalPolicyNet(self.mean.shape[0], self.net.history, self.net.horizon, self.net.action_dim,
                            self.settings.hidden_dim, self.settings.depth)
        net.load_state_dict(self.net.state_dict())
        policy = GoalPolicy(self.settings.kind, net.eval().requires_grad_(False), self.mean, self.std,
                            self.settings.record())
        if validation is not None:
            with torch.no_grad():
                error = float(self.examples_loss(validation, torch.arange(len(validation.goal))))
            policy.metrics = {"validation_mse": error, "zero_action_mse": float(validation.actions.pow(2).mean())}
        return policy


def planner_labels(model, examples: PolicyExamples, count: int, plan_overrides=(), seed: int = 0,
                   progress: bool = True) -> torch.Tensor:
    """The planner's K-step plans from ``count`` of the examples' states toward their goals: what ``distill``
    regresses. The planner, horizon and cost are those of configs/plan.yaml (with ``plan_overrides``)."""
    from tqdm.auto import tqdm

    from jepa_wm.config import compose, to_dict
    from jepa_wm.planning.costs import LatentGoalCost
    from jepa_wm.planning.experiment import planner_from_settings

    plan = compose("plan", list(plan_overrides))
    horizon = examples.actions.shape[1]
    planner = planner_from_settings(to_dict(plan.planner), horizon, model.action_dim, str(model.device), seed)
    cost = LatentGoalCost.from_config(model, plan.cost)
    shape = (model.num_tokens, model.embed_dim)
    labels = []
    for index in tqdm(range(count), desc="planner labels", unit="plan", disable=not progress):
        z_history = examples.z_history[index].view(1, -1, *shape).to(model.device)
        past = examples.past_actions[index][None].to(model.device)
        cost_fn = cost.cost_of_embeddings(z_history, past, examples.goal[index].view(shape).to(model.device))
        labels.append(planner.plan(cost_fn).actions.cpu())
    return torch.stack(labels)  # (count, K, A)
