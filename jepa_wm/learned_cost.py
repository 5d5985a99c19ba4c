"""Learned planning costs: how far a goal is, in steps, from an embedding, trained on the world model's own data.

The latent L2 distance between a predicted and a goal embedding weighs every embedding direction alike, so it
ranks the planner's candidates poorly even when prediction is good (rank correlation with the true cost 0.2-0.4
on reacher, finger, hopper). These heads learn a distance that counts steps instead, from the reward-free
trajectories the world model was trained on, over its frozen embeddings (no pixels, no gradient into the model):

- ``temporal`` (TRM, arXiv 2605.22164; RC-aux, arXiv 2605.07278): a pairwise head regresses log(1 + time
  separation) of two frames of one trajectory, separations drawn evenly on a log scale across the whole
  episode, and frames of other trajectories as "farther than any episode". On random-policy data this is how
  long a random walk takes to drift there, not how soon the goal can be reached.
- ``hilbert`` (HILP, Park et al. 2024): an embedding phi whose Euclidean distance is the temporal distance,
  learned as a goal-conditioned value V(s, g) = -||phi(s) - phi(g)|| with an expectile TD backup
  (target -1 + gamma V(s', g), upper expectile): a shortest-path distance, what a planner needs.
- ``decoded`` (task-aware): a probe f decodes the task's success coordinates (the joints or position success
  is measured on; hinge angles as sin and cos, standardised) from an embedding, and d(z, g) = ||f(z) - f(g)||.
  The latent distance to a goal image asks for the whole picture (a torso's position, the finger's own pose)
  where success asks for a few joints; this cost asks for those alone. The goal is still an image: its
  coordinates are decoded from its embedding, never read from the simulator.

A ``LearnedCost`` keeps the head with the input normalisation and the scales that make it summable with the
latent distance; it is saved inside the checkpoint as tensors and plain values (loads with ``weights_only``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from jepa_wm.heads import FAMILIES, HeadFamily, HeadSettings, HeadTrainer, StoredHead
from jepa_wm.layers import mlp
from jepa_wm.metrics import rank_correlation
from jepa_wm.registry import Registry

# Learned costs by kind (configs/learned_cost/<kind>.yaml holds their settings). A kind is its head's class:
# ``settings`` (its settings class), ``from_settings(settings, features)``, and ``loss(trainer)``, one training
# step's loss on the trainer's samples (``CostTrainer``).
HEADS = Registry("learned cost", "learned_cost=KIND, a file of configs/learned_cost/")


@dataclass
class CostTrainingSettings(HeadSettings):
    """What ``CostTrainer`` does: the settings every learned cost has; a kind's class adds its own fields.
    ``configs/learned_cost/<kind>.yaml`` holds the defaults and says what each is (``default_settings``)."""

    family: ClassVar[Registry] = HEADS
    what: ClassVar[str] = "learned cost"

    @classmethod
    def from_config(cls, cfg, **changes) -> "CostTrainingSettings":
        """The settings of the kind ``cfg`` names (a ``configs/learned_cost/`` section or a stored record), with
        ``changes`` on top: its own settings class reads the fields it has."""
        kind = changes.get("kind", cfg["kind"])
        settings_class = HEADS[kind].settings
        return settings_class(**settings_class.fields_of(cfg, **changes))


@dataclass
class TemporalSettings(CostTrainingSettings):
    negative_fraction: float = 0.25  # pairs whose goal comes from another trajectory

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.negative_fraction < 1:
            raise ValueError(f"negative_fraction must be in [0, 1); got {self.negative_fraction}")


@dataclass
class HilbertSettings(CostTrainingSettings):
    latent_dim: int = 32          # size of phi
    discount: float = 0.99        # gamma of the TD backup
    expectile: float = 0.9        # > 0.5 backs up the shortest path
    target_update: float = 0.005  # EMA rate of the target phi
    goal_mix: tuple = (0.2, 0.5, 0.3)  # goals = the state itself, a later state, any state

    def __post_init__(self):
        super().__post_init__()
        self.goal_mix = tuple(float(p) for p in self.goal_mix)
        if not 0 < self.discount < 1 or not 0 < self.expectile < 1:
            raise ValueError(f"discount and expectile must be in (0, 1); got {self.discount}, {self.expectile}")
        if len(self.goal_mix) != 3 or min(self.goal_mix) < 0 or sum(self.goal_mix) <= 0:
            raise ValueError(f"goal_mix must be 3 non-negative weights; got {list(self.goal_mix)}")


@dataclass
class DecodedSettings(CostTrainingSettings):
    predicted_steps: int = 0  # also fit the probe on the world model's predictions 1..N model steps ahead
    decoded_outputs: int = 0  # size of the probe's targets (set from the data when it trains)

    from_data: ClassVar[tuple[str, ...]] = ("decoded_outputs",)

    def __post_init__(self):
        super().__post_init__()
        if self.predicted_steps < 0:
            raise ValueError(f"predicted_steps must be >= 0 (0: encodings only); got {self.predicted_steps}")


@HEADS.register("temporal")
class TemporalDistanceHead(nn.Module):
    """d(z, g) >= 0 in steps, from a pairwise MLP over (z, g, z - g) that predicts log(1 + steps)."""

    settings = TemporalSettings

    @classmethod
    def from_settings(cls, settings, features: int) -> "TemporalDistanceHead":
        return cls(features, settings.hidden_dim, settings.depth)

    def __init__(self, features: int, hidden_dim: int = 256, depth: int = 2):
        super().__init__()
        self.net = mlp(3 * features, hidden_dim, 1, depth)

    def log_steps(self, z: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """z (..., F), goal (..., F) broadcastable -> log(1 + steps) (...).

        The first layer reads (z, g, z - g), i.e. (W_z + W_d) z + (W_g - W_d) g: computed that way, one goal shared
        by every candidate of a plan costs one product instead of a copy per candidate (the same function)."""
        first = self.net[0]
        w_z, w_goal, w_difference = first.weight.split(z.shape[-1], dim=1)
        hidden = (nn.functional.linear(z, w_z + w_difference)
                  + nn.functional.linear(goal, w_goal - w_difference, first.bias))
        return nn.functional.softplus(self.net[1:](hidden)).squeeze(-1)

    def forward(self, z: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        return torch.expm1(self.log_steps(z, goal))

    def loss(self, trainer: "CostTrainer") -> torch.Tensor:
        """log(1 + separation) of two frames of one episode, separations even on a log scale; goals of other
        episodes (``negative_fraction``) as farther than any episode."""
        pairs, batch = trainer.pairs, trainer.settings.batch_size
        episode = pairs.integers(pairs.count, (batch,))
        separation = pairs.log_spaced_separations(batch)
        start = (torch.rand(batch, generator=pairs.generator) * (pairs.length - separation)).long()
        z, goal = pairs.frames(episode, start), pairs.frames(episode, start + separation)
        label = torch.log1p(separation.float())
        negative = torch.rand(batch, generator=pairs.generator) < trainer.settings.negative_fraction
        if negative.any():
            other = (episode + 1 + pairs.integers(pairs.count - 1, (batch,))) % pairs.count
            goal = torch.where(negative[:, None], pairs.frames(other, pairs.integers(pairs.length, (batch,))), goal)
            label = torch.where(negative, math.log1p(2 * pairs.length), label)  # farther than anything in one episode
        return nn.functional.mse_loss(self.log_steps(z, goal), label)


@HEADS.register("hilbert")
class HilbertDistanceHead(nn.Module):
    """d(z, g) = ||phi(z) - phi(g)||: a metric embedding whose distances are temporal distances (HILP)."""

    settings = HilbertSettings
    uses_target = True  # the TD backup reads an EMA copy of the head (``CostTrainer.target``)

    @classmethod
    def from_settings(cls, settings, features: int) -> "HilbertDistanceHead":
        return cls(features, settings.hidden_dim, settings.depth, settings.latent_dim)

    def __init__(self, features: int, hidden_dim: int = 256, depth: int = 2, latent_dim: int = 32):
        super().__init__()
        self.phi = mlp(features, hidden_dim, latent_dim, depth)

    def forward(self, z: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        return (self.phi(z) - self.phi(goal)).pow(2).sum(-1).add(1e-8).sqrt()

    def loss(self, trainer: "CostTrainer") -> torch.Tensor:
        """Expectile TD on V(s, g) = -d(s, g): target -1 + gamma V(s', g) (0 at the goal itself)."""
        pairs, settings, batch = trainer.pairs, trainer.settings, trainer.settings.batch_size
        episode = pairs.integers(pairs.count, (batch,))
        time = pairs.integers(pairs.length - 1, (batch,))
        # Goals: the state itself (distance 0), a later state of the same episode (geometric offset), a random one.
        kind = torch.multinomial(torch.tensor(settings.goal_mix, dtype=torch.float), batch, replacement=True,
                                 generator=pairs.generator)
        # Geometric offsets (success probability 1 - gamma) by inverse CDF, from the trainer's own generator.
        uniform = torch.rand(batch, generator=pairs.generator).clamp_min(1e-12)
        offset = (torch.log(uniform) / math.log(settings.discount)).floor().long() + 1
        later = torch.minimum(time + offset, torch.tensor(pairs.length - 1))
        goal_episode = torch.where(kind == 2, pairs.integers(pairs.count, (batch,)), episode)
        goal_time = torch.where(kind == 0, time, torch.where(kind == 1, later, pairs.integers(pairs.length, (batch,))))
        z, z_next = pairs.frames(episode, time), pairs.frames(episode, time + 1)
        goal = pairs.frames(goal_episode, goal_time)
        at_goal = (goal_episode == episode) & (goal_time == time)
        with torch.no_grad():
            next_value = -trainer.target(z_next, goal)
            backup = torch.where(at_goal, torch.zeros_like(next_value), -1.0 + settings.discount * next_value)
        return _expectile_loss(backup - (-self(z, goal)), settings.expectile)


@HEADS.register("decoded")
class DecodedCoordinatesHead(nn.Module):
    """d(z, g) = ||f(z) - f(g)||, f an MLP probe from an embedding to the standardised success coordinates."""

    settings = DecodedSettings
    needs_targets = True  # trains on the success coordinates of every frame (``CostTrainer(targets=)``)

    @classmethod
    def from_settings(cls, settings, features: int) -> "DecodedCoordinatesHead":
        if settings.decoded_outputs < 1:
            raise ValueError("a decoded cost needs decoded_outputs >= 1 (the success coordinates, set from the data)")
        return cls(features, settings.hidden_dim, settings.depth, settings.decoded_outputs)

    def __init__(self, features: int, hidden_dim: int = 256, depth: int = 2, outputs: int = 2):
        super().__init__()
        self.decoder = mlp(features, hidden_dim, outputs, depth)
        # The targets' spread: the decoder predicts standardised targets (every coordinate learned alike); the
        # distance is measured back in the task's units (metres; for a hinge, the chord of its angle), as success is.
        self.register_buffer("target_std", torch.ones(outputs))

    def forward(self, z: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        difference = (self.decoder(z) - self.decoder(goal)) * self.target_std
        return difference.pow(2).sum(-1).add(1e-8).sqrt()

    def loss(self, trainer: "CostTrainer") -> torch.Tensor:
        pairs, batch = trainer.pairs, trainer.settings.batch_size
        episode, time = pairs.integers(pairs.count, (batch,)), pairs.integers(pairs.length, (batch,))
        loss = nn.functional.mse_loss(self.decoder(pairs.frames(episode, time)), trainer.targets[episode, time])
        if trainer.predictions is None:
            return loss
        # Planning decodes predictions, not encodings: fit both, an equal batch of each.
        predicted, targets = trainer.predictions
        index = pairs.integers(len(predicted), (batch,))
        return (loss + nn.functional.mse_loss(self.decoder(predicted[index]), targets[index])) / 2


def target_columns(periods) -> list[int]:
    """The success coordinate behind each column of ``success_targets``: the non-angles, then each angle's sin,
    then each angle's cos."""
    angle = [float(period) > 0 for period in periods]
    plain = [index for index, is_angle in enumerate(angle) if not is_angle]
    angles = [index for index, is_angle in enumerate(angle) if is_angle]
    return plain + angles + angles


def success_targets(coordinates: torch.Tensor, periods) -> torch.Tensor:
    """Success coordinates (..., C) as a probe's targets: each angle (``periods`` (C,) > 0, see
    ``SuccessCriterion.angle_periods``) as the sin and cos of its turn within its period, so that -pi and pi are
    one target (and so are the two looks of a body that looks the same after half a turn); the others as they are."""
    periods = torch.as_tensor(periods, dtype=torch.float32)
    angle = periods > 0
    coordinates = coordinates.float()
    turns = coordinates[..., angle] * (2 * torch.pi / periods[angle])
    parts = [coordinates[..., ~angle], turns.sin(), turns.cos()]
    return torch.cat([part for part in parts if part.shape[-1]], dim=-1)


def coordinates_from_targets(targets: torch.Tensor, periods) -> torch.Tensor:
    """The inverse of ``success_targets``: (..., T) probe outputs back to success coordinates (..., C), each angle
    read from its sin and cos as a turn within its period."""
    periods = torch.as_tensor(periods, dtype=torch.float32)
    angle = periods > 0
    plain, angles = int((~angle).sum()), int(angle.sum())
    turns = torch.atan2(targets[..., plain:plain + angles], targets[..., plain + angles:plain + 2 * angles])
    coordinates = torch.empty(*targets.shape[:-1], len(periods))
    coordinates[..., ~angle] = targets[..., :plain].float()
    coordinates[..., angle] = turns.float() * periods[angle] / (2 * torch.pi)
    return coordinates


def default_settings(kind: str = "hilbert", **changes) -> CostTrainingSettings:
    """The settings of ``configs/learned_cost/<kind>.yaml``, with ``changes``."""
    from jepa_wm.config import load_group, to_dict

    return CostTrainingSettings.from_config(to_dict(load_group("learned_cost", kind)), **changes)


@dataclass
class LearnedCost(StoredHead):
    """A trained head with what planning needs around it.

    ``latent_scale`` and ``learned_scale`` are the mean latent (mean squared) and learned distances between random
    frames of the data, so that ``latent / latent_scale + learned / learned_scale`` adds two costs of comparable
    size.
    """

    latent_scale: float = 1.0
    learned_scale: float = 1.0

    def distance(self, z: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """Steps to the goal: z (..., F), goal (F,) or broadcastable -> (...)."""
        return self.net(self.normalise(z), self.normalise(goal.to(z)))

    def extra_entries(self) -> dict:
        return {"latent_scale": float(self.latent_scale), "learned_scale": float(self.learned_scale)}

    @staticmethod
    def settings_class(record: dict) -> CostTrainingSettings:
        return CostTrainingSettings.from_config(record)

    @classmethod
    def rebuild(cls, settings, entry: dict) -> nn.Module:
        return build_head(settings, int(entry["input_mean"].shape[0]))

    @classmethod
    def from_entry(cls, entry: dict, net: nn.Module) -> "LearnedCost":
        return cls(entry["kind"], net, entry["input_mean"], entry["input_std"], dict(entry["settings"]),
                   dict(entry.get("metrics", {})), entry["latent_scale"], entry["learned_scale"])


def build_head(settings: CostTrainingSettings, features: int) -> nn.Module:
    return HEADS[settings.kind].from_settings(settings, features)


FAMILIES.register("learned_cost")(HeadFamily("learned_cost", "learned cost", "learned_cost", "train-cost", HEADS,
                                             CostTrainingSettings, LearnedCost))


# ---------------------------------------------------------------------------------------------- training
class _Pairs:
    """Samples of frame pairs from embedded episodes (E, T, F), all drawn from one seeded generator."""

    def __init__(self, episodes: torch.Tensor, generator: torch.Generator):
        self.episodes, self.generator = episodes, generator
        self.count, self.length = episodes.shape[:2]

    def integers(self, high, size) -> torch.Tensor:
        return (torch.rand(size, generator=self.generator) * high).long().clamp(max=torch.as_tensor(high) - 1)

    def frames(self, episode: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        return self.episodes[episode, time]  # (B, F)

    def log_spaced_separations(self, size: int) -> torch.Tensor:
        """Separations in [0, T-1] spread evenly on a log scale: as many short as long ones (TRM)."""
        top = math.log1p(self.length - 1)
        return torch.expm1(torch.rand(size, generator=self.generator) * top).round().long()


def _expectile_loss(difference: torch.Tensor, expectile: float) -> torch.Tensor:
    weight = torch.where(difference > 0, expectile, 1 - expectile)
    return (weight * difference.pow(2)).mean()


class CostTrainer(HeadTrainer):
    """Trains a learned cost on embedded episodes (E, T, F), whose frames are consecutive env steps: each step's
    loss is the kind's (``loss(trainer)`` of its head class), on the trainer's ``pairs`` of frames. A kind that
    ``needs_targets`` trains on ``targets`` (E, T, C'), the success coordinates of every frame; one that
    ``uses_target`` gets an EMA copy of its head as ``target``; given ``predictions``, the world model's predicted
    embeddings (N, F) and their frames' targets (N, C'), it fits those as well (``DecodedSettings.predicted_steps``)."""

    def __init__(self, episodes: torch.Tensor, settings: CostTrainingSettings, targets: torch.Tensor | None = None,
                 predictions: tuple[torch.Tensor, torch.Tensor] | None = None):
        kind = HEADS[settings.kind]
        if getattr(kind, "needs_targets", False):
            if targets is None or targets.shape[:2] != episodes.shape[:2]:
                raise ValueError(f"a {settings.kind} cost trains on the success coordinates of every frame (targets=)")
            settings = dataclasses.replace(settings, decoded_outputs=int(targets.shape[-1]))
            flat_targets = targets.float().flatten(0, 1)
            self.target_mean, self.target_std = flat_targets.mean(0), flat_targets.std(0).clamp_min(1e-6)
            self.targets = (targets.float() - self.target_mean) / self.target_std
        episodes = episodes.float()
        flat = episodes.flatten(0, 1)
        self.episodes, self.mean, self.std = episodes, flat.mean(0), flat.std(0).clamp_min(1e-6)
        self.predictions = None
        if predictions is not None:
            predicted, predicted_targets = predictions
            self.predictions = ((predicted.float() - self.mean) / self.std,
                                (predicted_targets.float() - self.target_mean) / self.target_std)
        self.start(settings, lambda: build_head(settings, episodes.shape[-1]))
        self.pairs = _Pairs((episodes - self.mean) / self.std, self.generator)
        if hasattr(self.net, "target_std"):
            self.net.target_std.copy_(self.target_std)
        self.target = None
        if getattr(kind, "uses_target", False):
            self.target = build_head(settings, episodes.shape[-1]).requires_grad_(False)
            self.target.load_state_dict(self.net.state_dict())

    def loss(self) -> torch.Tensor:
        return self.net.loss(self)

    def after_step(self) -> None:
        if self.target is not None:
            with torch.no_grad():
                for target, online in zip(self.target.parameters(), self.net.parameters()):
                    target.lerp_(online, self.settings.target_update)

    def extra_state(self) -> dict:
        return {"target": self.target.state_dict() if self.target is not None else None}

    def load_extra_state(self, state: dict) -> None:
        if self.target is not None:
            self.target.load_state_dict(state["target"])

    def result(self, validation: torch.Tensor | None = None, coordinates: torch.Tensor | None = None) -> LearnedCost:
        """The trained cost, with its scales and, given held-out episodes (E', T', F) and the true goal
        coordinates of their frames (E', T', C), its metrics (see ``validation_metrics``)."""
        head = build_head(self.settings, self.episodes.shape[-1])
        head.load_state_dict(self.net.state_dict())
        cost = LearnedCost(self.settings.kind, head.eval().requires_grad_(False), self.mean, self.std,
                           self.settings.record())
        generator = torch.Generator().manual_seed(self.settings.seed + 1)
        cost.latent_scale, cost.learned_scale = _random_pair_scales(cost, self.episodes, generator)
        if validation is not None and coordinates is not None:
            cost.metrics = validation_metrics(cost, validation.float(), coordinates.float(), generator)
        return cost

    def decoding_r2(self, episodes: torch.Tensor, coordinates: torch.Tensor, periods, by_coordinate: bool = False):
        """R^2 of the decoded cost's probe on held-out episodes (E', T', F) and their success coordinates; with
        ``by_coordinate`` a list, one R^2 per success coordinate (an angle's sin and cos together): which part of
        the pose the encoding holds."""
        targets = (success_targets(coordinates, periods) - self.target_mean) / self.target_std
        with torch.no_grad():
            decoded = self.net.decoder((episodes.float() - self.mean) / self.std)
        errors = (decoded - targets).pow(2).flatten(0, 1).sum(0)
        spread = (targets - targets.mean((0, 1))).pow(2).flatten(0, 1).sum(0)
        if not by_coordinate:
            return float(1 - errors.sum() / spread.sum())
        columns = torch.as_tensor(target_columns(periods))
        return [float(1 - errors[columns == index].sum() / spread[columns == index].sum())
                for index in range(len(periods))]


def stored_with(entry: dict | None, settings: CostTrainingSettings) -> bool:
    """Whether a checkpoint's learned-cost entry was trained with ``settings``. Its record is read through the
    kind's settings class, so a record of an earlier version (every kind's fields) compares by what this kind has."""
    if not entry or not isinstance(entry.get("settings"), dict):
        return False
    try:
        return CostTrainingSettings.from_config(entry["settings"]).chosen() == settings.chosen()
    except (KeyError, TypeError, ValueError):  # a record this version cannot read: train it anew
        return False


def train_learned_cost(episodes: torch.Tensor, settings: CostTrainingSettings, validation: torch.Tensor | None = None,
                       validation_coordinates: torch.Tensor | None = None, progress=None) -> LearnedCost:
    """Train a learned cost in one go (see ``CostTrainer`` for resumable training)."""
    trainer = CostTrainer(episodes, settings)
    trainer.train(settings.steps, progress)
    return trainer.result(validation, validation_coordinates)


def _random_pair_scales(cost: LearnedCost, episodes: torch.Tensor, generator: torch.Generator) -> tuple[float, float]:
    flat = episodes.flatten(0, 1)
    first = (torch.rand(4096, generator=generator) * len(flat)).long()
    second = (torch.rand(4096, generator=generator) * len(flat)).long()
    with torch.no_grad():
        latent = (flat[first] - flat[second]).pow(2).mean(-1).mean()
        learned = cost.distance(flat[first], flat[second]).mean()
    return float(latent.clamp_min(1e-8)), float(learned.clamp_min(1e-8))


def validation_metrics(cost: LearnedCost, episodes: torch.Tensor, coordinates: torch.Tensor,
                       generator: torch.Generator, pairs: int = 4096) -> dict:
    """Rank correlations over random frame pairs of held-out episodes: learned vs latent L2 distance, each
    against the true distance of the goal coordinates (any two frames) and the time separation (same episode)."""
    count, length = episodes.shape[:2]
    a_episode = (torch.rand(pairs, generator=generator) * count).long()
    b_episode = (torch.rand(pairs, generator=generator) * count).long()
    a_time = (torch.rand(pairs, generator=generator) * length).long()
    b_time = (torch.rand(pairs, generator=generator) * length).long()
    z, goal = episodes[a_episode, a_time], episodes[b_episode, b_time]
    true = (coordinates[a_episode, a_time] - coordinates[b_episode, b_time]).norm(dim=-1)
    with torch.no_grad():
        learned, latent = cost.distance(z, goal), (z - goal).pow(2).mean(-1)
    same = (torch.rand(pairs, generator=generator) * count).long()
    start = (torch.rand(pairs, generator=generator) * length).long()
    later = (start + (torch.rand(pairs, generator=generator) * (length - start)).long()).clamp(max=length - 1)
    separation = (later - start).float()
    with torch.no_grad():
        learned_time = cost.distance(episodes[same, start], episodes[same, later])
        latent_time = (episodes[same, start] - episodes[same, later]).pow(2).mean(-1)
    return {"true_distance_rank_correlation": float(rank_correlation(learned, true)),
            "latent_true_distance_rank_correlation": float(rank_correlation(latent, true)),
            "time_rank_correlation": float(rank_correlation(learned_time, separation)),
            "latent_time_rank_correlation": float(rank_correlation(latent_time, separation))}
