"""Named implementations of an extension point: encoders, predictors, anti-collapse terms, planners, costs.

One shape for every extension point. A new implementation is one class (or function) with a decorator and
its settings in one YAML file; nothing else names it:

    from jepa_wm.encoders import ENCODERS

    @ENCODERS.register("resnet")          # model.encoder.name=resnet, settings under model.encoder.*
    class ResNetEncoder(nn.Module):
        observation = "pixels"
        @classmethod
        def from_config(cls, cfg, obs_shape): ...
"""

from __future__ import annotations

from typing import Callable, Iterator, TypeVar

from jepa_wm.errors import did_you_mean

T = TypeVar("T")


class Registry:
    """``name -> implementation`` for one kind of thing, with errors that name the nearest choice."""

    def __init__(self, kind: str, where: str):
        self.kind, self.where = kind, where  # e.g. "encoder", "model.encoder.name"
        self._entries: dict[str, object] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(implementation: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = implementation
            return implementation

        return add

    def __getitem__(self, name: str):
        if name not in self._entries:
            choices = sorted(self._entries)
            raise ValueError(f"unknown {self.kind} '{name}'{did_you_mean(name, choices)} ({self.where}; choices: "
                             f"{', '.join(choices)})")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self):
        return [(name, self._entries[name]) for name in self.names()]
