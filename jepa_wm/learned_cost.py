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

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from jepa_wm.layers import mlp
from jepa_wm.metrics import rank_correlation
from jepa_wm.registry import Registry

# Learned costs by kind (configs/learned_cost/<kind>.yaml holds their settings); each head builds itself from
# the settings and the embedding size (``from_settings``).
HEADS = Registry("learned cost", "learned_cost=KIND, a file of configs/learned_cost/")


@HEADS.register("temporal")
class TemporalDistanceHead(nn.Module):
    """d(z, g) >= 0 in steps, from a pairwise MLP over (z, g, z - g) that predicts log(1 + steps)."""

    @classmethod
    def from_settings(cls, settings, features: int) -> "TemporalDistanceHead":
        return cls(features, settings.hidden_dim, settings.depth)

    def __init__(self, features: int, hidden_dim: int = 256, depth: int = 2):
        super().__init__()
        self.net = mlp(3 * features, hidden_dim, 1, depth)

    def log_steps(self, z: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """z (..., F), goal (..., F) broadcastable -> log(1 + steps) (...)."""
        z, goal = torch.broadcast_tensors(z, goal)
        return nn.functional.softplus(self.net(torch.cat([z, goal, z - goal], dim=-1))).squeeze(-1)

    def forward(self, z: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        return torch.expm1(self.log_steps(z, goal))


@HEADS.register("hilbert")
class HilbertDistanceHead(nn.Module):
    """d(z, g) = ||phi(z) - phi(g)||: a metric embedding whose distances are temporal distances (HILP)."""

    @classmethod
    def from_settings(cls, settings, features: int) -> "HilbertDistanceHead":
        return cls(features, settings.hidden_dim, settings.depth, settings.latent_dim)

    def __init__(self, features: int, hidden_dim: int = 256, depth: int = 2, latent_dim: int = 32):
        super().__init__()
        self.phi = mlp(features, hidden_dim, latent_dim, depth)

    def forward(self, z: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        return (self.phi(z) - self.phi(goal)).pow(2).sum(-1).add(1e-8).sqrt()





@HEADS.register("decoded")
class DecodedCoordinatesHead(nn.Module):
    """d(z, g) = ||f(z) - f(g)||, f an MLP probe from an embedding to the standardised success coordinates."""

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


def success_targets(coordinates: torch.Tensor, hinge) -> torch.Tensor:
    """Success coordinates (..., C) as a probe's targets: hinge angles (``hinge`` (C,) True) as their sin and cos,
    so that -pi and pi are one target; the others as they are."""
    hinge = torch.as_tensor(hinge, dtype=torch.bool)
    coordinates = coordinates.float()
    parts = [coordinates[..., ~hinge], coordinates[..., hinge].sin(), coordinates[..., hinge].cos()]
    return torch.cat([part for part in parts if part.shape[-1]], dim=-1)


def check_training_budget(what: str, settings) -> None:
    """The checks every head trained on frozen embeddings shares (learned costs, policies): ``settings`` has
    ``steps``, ``batch_size``, ``lr``, ``hidden_dim`` and ``depth``."""
    s = settings
    if s.steps < 1 or s.batch_size < 2 or not s.lr > 0 or s.hidden_dim < 1 or s.depth < 1:
        raise ValueError(f"{what} training needs steps >= 1, batch_size >= 2, lr > 0, hidden_dim and depth >= 1; "
                         f"got {s.steps}, {s.batch_size}, {s.lr}, {s.hidden_dim}, {s.depth}")


@dataclass
class CostTrainingSettings:
    """What ``CostTrainer`` does. ``configs/learned_cost/<kind>.yaml`` holds the defaults and says what each is
    (``default_settings``)."""

    kind: str
    steps: int
    batch_size: int
    lr: float
    hidden_dim: int
    depth: int
    latent_dim: int          # hilbert: size of phi
    discount: float          # hilbert: gamma of the TD backup
    expectile: float         # hilbert: > 0.5 backs up the shortest path
    target_update: float     # hilbert: EMA rate of the target phi
    goal_mix: tuple          # hilbert: goals = the state itself, a later state, any state
    negative_fraction: float  # temporal: pairs whose goal comes from another trajectory
    seed: int
    decoded_outputs: int = 0  # decoded: size of the probe's targets (set from the data when it trains)

    def __post_init__(self):
        HEADS[self.kind]  # an unknown kind fails here, with the nearest one
        self.goal_mix = tuple(float(p) for p in self.goal_mix)
        check_training_budget("learned cost", self)
        if not 0 < self.discount < 1 or not 0 < self.expectile < 1 or not 0 <= self.negative_fraction < 1:
            raise ValueError(f"discount and expectile must be in (0, 1), negative_fraction in [0, 1); got "
                             f"{self.discount}, {self.expectile}, {self.negative_fraction}")
        if len(self.goal_mix) != 3 or min(self.goal_mix) < 0 or sum(self.goal_mix) <= 0:
            raise ValueError(f"goal_mix must be 3 non-negative weights; got {list(self.goal_mix)}")

    @classmethod
    def from_config(cls, cfg, **changes) -> "CostTrainingSettings":
        """From a ``configs/learned_cost/`` section (a mapping), with ``changes`` on top."""
        values = {**{key: cfg[key] for key in cls.__dataclass_fields__ if key in cfg}, **changes}
        return cls(**{key: list(value) if key == "goal_mix" else value for key, value in values.items()})


def default_settings(kind: str = "hilbert", **changes) -> CostTrainingSettings:
    """The settings of ``configs/learned_cost/<kind>.yaml``, with ``changes``."""
    from jepa_wm.config import load_group, to_dict

    return CostTrainingSettings.from_config(to_dict(load_group("learned_cost", kind)), **changes)


@dataclass
class LearnedCost:
    """A trained head with what planning needs around it.

    ``input_mean`` / ``input_std`` standardise flattened embeddings (F,); ``latent_scale`` and ``learned_scale``
    are the mean latent (mean squared) and learned distances between random frames of the data, so that
    ``latent / latent_scale + learned / learned_scale`` adds two costs of comparable size.
    """

    kind: str
    head: nn.Module
    input_mean: torch.Tensor
    input_std: torch.Tensor
    latent_scale: float
    learned_scale: float
    settings: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    def distance(self, z: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """Steps to the goal: z (..., F), goal (F,) or broadcastable -> (...)."""
        mean, std = self.input_mean.to(z), self.input_std.to(z)
        return self.head((z - mean) / std, (goal.to(z) - mean) / std)

    def to(self, device) -> "LearnedCost":
        self.head.to(device)
        return self

    def to_checkpoint(self) -> dict:
        """Tensors and plain values only: what ``torch.load(weights_only=True)`` reads back."""
        return {"kind": self.kind, "state_dict": {k: v.detach().cpu() for k, v in self.head.state_dict().items()},
                "input_mean": self.input_mean.cpu(), "input_std": self.input_std.cpu(),
                "latent_scale": float(self.latent_scale), "learned_scale": float(self.learned_scale),
                "settings": dict(self.settings), "metrics": dict(self.metrics)}

    @classmethod
    def from_checkpoint(cls, entry: dict) -> "LearnedCost":
        settings = CostTrainingSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in entry["settings"].items()})
        features = int(entry["input_mean"].shape[0])
        head = build_head(settings, features)
        head.load_state_dict(entry["state_dict"])
        return cls(entry["kind"], head.eval().requires_grad_(False), entry["input_mean"], entry["input_std"],
                   entry["latent_scale"], entry["learned_scale"], dict(entry["settings"]), dict(entry.get("metrics", {})))


def build_head(settings: CostTrainingSettings, features: int) -> nn.Module:
    return HEADS[settings.kind].from_settings(settings, features)


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


class CostTrainer:
    """Trains a learned cost on embedded episodes (E, T, F), whose frames are consecutive env steps.

    Its whole state (weights, target, optimizer, random generator, step) is ``state_dict()``: saved every so
    often, a killed training resumes exactly where it stopped (``load_state_dict``), as training runs do.
    """

    def __init__(self, episodes: torch.Tensor, settings: CostTrainingSettings, targets: torch.Tensor | None = None):
        if settings.kind == "decoded":  # the probe's targets (E, T, C'): success_targets of the frames
            if targets is None or targets.shape[:2] != episodes.shape[:2]:
                raise ValueError("a decoded cost trains on the success coordinates of every frame (targets=)")
            settings = CostTrainingSettings(**{**settings.__dict__, "decoded_outputs": int(targets.shape[-1])})
            flat_targets = targets.float().flatten(0, 1)
            self.target_mean, self.target_std = flat_targets.mean(0), flat_targets.std(0).clamp_min(1e-6)
            self.targets = (targets.float() - self.target_mean) / self.target_std
        self.settings = settings
        self.generator = torch.Generator().manual_seed(settings.seed)
        episodes = episodes.float()
        flat = episodes.flatten(0, 1)
        self.episodes, self.mean, self.std = episodes, flat.mean(0), flat.std(0).clamp_min(1e-6)
        self.pairs = _Pairs((episodes - self.mean) / self.std, self.generator)
        with torch.random.fork_rng():
            torch.manual_seed(settings.seed)
            self.head = build_head(settings, episodes.shape[-1])
        if settings.kind == "decoded":
            self.head.target_std.copy_(self.target_std)
        self.target = None
        if settings.kind == "hilbert":
            self.target = build_head(settings, episodes.shape[-1]).requires_grad_(False)
            self.target.load_state_dict(self.head.state_dict())
        self.optimizer = torch.optim.Adam(self.head.parameters(), lr=settings.lr)
        self.step = 0

    def state_dict(self) -> dict:
        return {"step": self.step, "head": self.head.state_dict(), "optimizer": self.optimizer.state_dict(),
                "target": self.target.state_dict() if self.target is not None else None,
                "generator": self.generator.get_state(), "settings": settings_record(self.settings)}

    def load_state_dict(self, state: dict) -> None:
        if state["settings"] != settings_record(self.settings):
            raise ValueError("the saved learned-cost training was started with other settings")
        self.step = int(state["step"])
        self.head.load_state_dict(state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.target is not None:
            self.target.load_state_dict(state["target"])
        self.generator.set_state(state["generator"])

    def train(self, until: int, progress=None) -> None:
        """Optimise until step ``until``; ``progress(step, loss)`` after each step (a progress bar)."""
        settings, batch = self.settings, self.settings.batch_size
        self.head.train()
        while self.step < until:
            if settings.kind == "hilbert":
                loss = _hilbert_loss(self.head, self.target, self.pairs, batch, settings)
            elif settings.kind == "decoded":
                loss = _decoded_loss(self.head, self.pairs, self.targets, batch)
            else:
                loss = _temporal_loss(self.head, self.pairs, batch, settings)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.target is not None:
                with torch.no_grad():
                    for target, online in zip(self.target.parameters(), self.head.parameters()):
                        target.lerp_(online, settings.target_update)
            self.step += 1
            if progress is not None:
                progress(self.step, loss.item())

    def result(self, validation: torch.Tensor | None = None, coordinates: torch.Tensor | None = None) -> LearnedCost:
        """The trained cost, with its scales and, given held-out episodes (E', T', F) and the true goal
        coordinates of their frames (E', T', C), its metrics (see ``validation_metrics``)."""
        head = build_head(self.settings, self.episodes.shape[-1])
        head.load_state_dict(self.head.state_dict())
        cost = LearnedCost(self.settings.kind, head.eval().requires_grad_(False), self.mean, self.std, 1.0, 1.0,
                           settings_record(self.settings))
        generator = torch.Generator().manual_seed(self.settings.seed + 1)
        cost.latent_scale, cost.learned_scale = _random_pair_scales(cost, self.episodes, generator)
        if validation is not None and coordinates is not None:
            cost.metrics = validation_metrics(cost, validation.float(), coordinates.float(), generator)
        return cost


    def decoding_r2(self, episodes: torch.Tensor, coordinates: torch.Tensor, hinge) -> float:
        """R^2 of the decoded cost's probe on held-out episodes (E', T', F) and their success coordinates."""
        targets = (success_targets(coordinates, hinge) - self.target_mean) / self.target_std
        with torch.no_grad():
            decoded = self.head.decoder((episodes.float() - self.mean) / self.std)
        return float(1 - (decoded - targets).pow(2).sum() / (targets - targets.mean((0, 1))).pow(2).sum())


def settings_record(settings: CostTrainingSettings) -> dict:
    """Plain values (lists, not tuples): what checkpoints store and compare."""
    return {key: list(value) if isinstance(value, tuple) else value for key, value in settings.__dict__.items()}


def train_learned_cost(episodes: torch.Tensor, settings: CostTrainingSettings, validation: torch.Tensor | None = None,
                       validation_coordinates: torch.Tensor | None = None, progress=None) -> LearnedCost:
    """Train a learned cost in one go (see ``CostTrainer`` for resumable training)."""
    trainer = CostTrainer(episodes, settings)
    trainer.train(settings.steps, progress)
    return trainer.result(validation, validation_coordinates)


def _temporal_loss(head, pairs: _Pairs, batch: int, settings: CostTrainingSettings) -> torch.Tensor:
    episode = pairs.integers(pairs.count, (batch,))
    separation = pairs.log_spaced_separations(batch)
    start = (torch.rand(batch, generator=pairs.generator) * (pairs.length - separation)).long()
    z, goal = pairs.frames(episode, start), pairs.frames(episode, start + separation)
    label = torch.log1p(separation.float())
    negative = torch.rand(batch, generator=pairs.generator) < settings.negative_fraction
    if negative.any():
        other = (episode + 1 + pairs.integers(pairs.count - 1, (batch,))) % pairs.count
        goal = torch.where(negative[:, None], pairs.frames(other, pairs.integers(pairs.length, (batch,))), goal)
        label = torch.where(negative, math.log1p(2 * pairs.length), label)  # farther than anything in one episode
    return nn.functional.mse_loss(head.log_steps(z, goal), label)


def _decoded_loss(head, pairs: _Pairs, targets: torch.Tensor, batch: int) -> torch.Tensor:
    episode, time = pairs.integers(pairs.count, (batch,)), pairs.integers(pairs.length, (batch,))
    return nn.functional.mse_loss(head.decoder(pairs.frames(episode, time)), targets[episode, time])


def _hilbert_loss(head, target, pairs: _Pairs, batch: int, settings: CostTrainingSettings) -> torch.Tensor:
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
        next_value = -target(z_next, goal)
        backup = torch.where(at_goal, torch.zeros_like(next_value), -1.0 + settings.discount * next_value)
    value = -head(z, goal)
    return _expectile_loss(backup - value, settings.expectile)


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
