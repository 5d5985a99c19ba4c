"""Heads on a frozen world model's embeddings: one extension point for learned costs, policies and what comes next.

A *head* is a small network trained after the world model, on its frozen embeddings of its own data, and stored
inside its checkpoint as tensors and plain values (``torch.load(weights_only=True)`` reads it back). Heads come
in *families*, one checkpoint entry each (``learned_cost``: planning costs, ``policy``: goal-conditioned
policies), and every family has *kinds* (temporal, hilbert, decoded; gcbc, distill).

A new kind is one class registered in its family's registry, in the family's module, and one YAML file of
``configs/<family group>/``; nothing else names it:

    @HEADS.register("mine")                   # learned_cost=mine, settings in configs/learned_cost/mine.yaml
    class MyDistanceHead(nn.Module):
        settings = MySettings                 # a CostTrainingSettings with the kind's own fields
        @classmethod
        def from_settings(cls, settings, features): ...
        def loss(self, trainer, batch): ...   # one training step's loss (see CostTrainer)

The shared parts live here: the settings every head has (with the budget check), the stored head (input
normalisation, to and from the checkpoint), the resumable training loop, and the list of families that
checkpoints, world models, the training loop and the commands iterate instead of naming heads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from jepa_wm.registry import Registry


@dataclass(frozen=True)
class HeadFamily:
    """One checkpoint entry of heads: ``key`` is also the world model's attribute, ``group`` the folder of
    ``configs/`` that holds its kinds' settings, ``command`` the one that trains it."""

    key: str
    description: str
    group: str
    command: str
    kinds: Registry
    settings: type  # a HeadSettings: ``settings.from_config(section)`` reads a kind's settings
    stored: type  # a StoredHead: what the entry loads as


FAMILIES = Registry("head family", "a checkpoint entry of heads")


def head_families() -> list[HeadFamily]:
    """Every family of heads, in the order checkpoints list them (the built-in families register on import)."""
    import jepa_wm.learned_cost  # noqa: F401 - registers learned_cost
    import jepa_wm.policy  # noqa: F401 - registers policy

    return [FAMILIES[name] for name in ("learned_cost", "policy")] + [
        family for name, family in FAMILIES.items() if name not in ("learned_cost", "policy")]


def head_keys() -> list[str]:
    return [family.key for family in head_families()]


# ---------------------------------------------------------------------------------------------- settings
@dataclass
class HeadSettings:
    """What every head's training has; a family (and a kind) adds its own fields. ``family`` is set by the
    family's settings class and names the registry whose kinds are allowed."""

    kind: str
    steps: int
    batch_size: int
    lr: float
    hidden_dim: int
    depth: int
    seed: int

    family: ClassVar[Registry]
    what: ClassVar[str] = "head"
    from_data: ClassVar[tuple[str, ...]] = ()  # fields training sets from the data, not choices (``chosen``)

    def __post_init__(self):
        self.family[self.kind]  # an unknown kind fails here, with the nearest one
        if self.steps < 1 or self.batch_size < 2 or not self.lr > 0 or self.hidden_dim < 1 or self.depth < 1:
            raise ValueError(f"{self.what} training needs steps >= 1, batch_size >= 2, lr > 0, hidden_dim and depth "
                             f">= 1; got {self.steps}, {self.batch_size}, {self.lr}, {self.hidden_dim}, {self.depth}")

    @classmethod
    def fields_of(cls, values, **changes) -> dict:
        """The values of this class's fields among ``values`` (a config section or a stored record; a record of
        another version may hold more), with ``changes`` on top; lists become tuples where a field is a tuple."""
        names = {item.name for item in dataclasses.fields(cls)}
        chosen = {**{key: values[key] for key in names if key in values}, **changes}
        return {key: tuple(value) if isinstance(value, list) else value for key, value in chosen.items()}

    def record(self) -> dict:
        """Plain values (lists, not tuples): what checkpoints store."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in self.__dict__.items()}

    def chosen(self) -> dict:
        """The record without what training set from the data: what a stored head is compared by when a
        pipeline decides whether to train it again."""
        return {key: value for key, value in self.record().items() if key not in self.from_data}


# ---------------------------------------------------------------------------------------------- stored head
@dataclass
class StoredHead:
    """A trained head with its input normalisation (``input_mean`` / ``input_std`` over flattened embeddings
    (F,)), the settings it was trained with and its held-out metrics. A family adds what it needs around the
    net (``extra_entries`` / the fields after these) and how the net is rebuilt (``rebuild``)."""

    kind: str
    net: nn.Module
    input_mean: torch.Tensor
    input_std: torch.Tensor
    settings: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    def normalise(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.input_mean.to(z)) / self.input_std.to(z)

    def to(self, device) -> "StoredHead":
        self.net.to(device)
        return self

    def extra_entries(self) -> dict:
        return {}

    def to_checkpoint(self) -> dict:
        """Tensors and plain values only: what ``torch.load(weights_only=True)`` reads back."""
        return {"kind": self.kind, "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
                "input_mean": self.input_mean.cpu(), "input_std": self.input_std.cpu(),
                "settings": dict(self.settings), "metrics": dict(self.metrics), **self.extra_entries()}

    @classmethod
    def rebuild(cls, settings, entry: dict) -> nn.Module:
        raise NotImplementedError

    @classmethod
    def from_entry(cls, entry: dict, net: nn.Module) -> "StoredHead":
        """The stored head around ``net`` (its weights loaded): the family's extra fields read from ``entry``."""
        raise NotImplementedError

    @classmethod
    def from_checkpoint(cls, entry: dict) -> "StoredHead":
        settings = cls.settings_class(entry["settings"])
        net = cls.rebuild(settings, entry)
        net.load_state_dict(entry["state_dict"])
        return cls.from_entry(entry, net.eval().requires_grad_(False))

    @staticmethod
    def settings_class(record: dict):
        raise NotImplementedError

    @staticmethod
    def entry_problem(entry: dict, model) -> str | None:  # noqa: ARG004 - a family's own check, before rebuilding
        """Why this family's stored ``entry`` does not fit ``model``, in words (None when it does)."""
        return None


# ---------------------------------------------------------------------------------------------- training
class HeadTrainer:
    """The resumable training loop every head shares: ``loss()`` per step (the family's, from its kind), an
    Adam step, then ``after_step()``. Its whole state (weights, optimizer, random generator, step and what a
    family adds in ``extra_state``) is ``state_dict()``: saved every so often, a killed training resumes exactly
    where it stopped (``load_state_dict``)."""

    settings: HeadSettings
    net: nn.Module

    def start(self, settings: HeadSettings, build) -> None:
        """Seed the generator and build the net (``build()``) from the settings' seed, then its optimizer."""
        self.settings = settings
        self.generator = torch.Generator().manual_seed(settings.seed)
        with torch.random.fork_rng():
            torch.manual_seed(settings.seed)
            self.net = build()
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=settings.lr)
        self.step = 0

    def loss(self) -> torch.Tensor:
        raise NotImplementedError

    def after_step(self) -> None:
        pass

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def state_dict(self) -> dict:
        return {"step": self.step, "net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "settings": self.settings.record(), **self.extra_state()}

    def load_state_dict(self, state: dict) -> None:
        if state["settings"] != self.settings.record():
            raise ValueError(f"the saved {self.settings.what} training was started with other settings")
        self.step = int(state["step"])
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.load_extra_state(state)

    def train(self, until: int, progress=None) -> None:
        """Optimise until step ``until``; ``progress(step, loss)`` after each step (a progress bar)."""
        self.net.train()
        while self.step < until:
            loss = self.loss()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.after_step()
            self.step += 1
            if progress is not None:
                progress(self.step, loss.item())
