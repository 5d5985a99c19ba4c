"""Trajectory optimisers: minimise a batched cost over action sequences within box bounds.

Planners know nothing about models or environments. A caller hands `plan` a
`cost_fn(actions (N, K, A)) -> cost (N,)` and gets back the sequence to execute:

    planner = CEM(horizon=5, action_low=-1.0, action_high=1.0, seed=0)
    result = planner.plan(cost_fn, init=warm_start)   # result.actions: (K, A)

K is the horizon and A the action dimension. Every planner evaluates all candidates of an
iteration in one `cost_fn` call, and draws its noise from its own `torch.Generator`, so two
planners built with the same seed return the same plans. The generator advances from one `plan`
call to the next (an MPC loop gets fresh noise at every step and is still reproducible).
"""

from __future__ import annotations

import difflib
import inspect
import math
import numbers
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

CostFn = Callable[[torch.Tensor], torch.Tensor]  # actions (N, K, A) -> cost (N,)
Bound = float | Sequence[float] | torch.Tensor


@dataclass
class PlanResult:
    """What a planner hands back: the plan, its cost, and diagnostics for logging."""

    actions: torch.Tensor  # (K, A) the sequence to execute, within the bounds
    cost: float  # cost_fn's value for `actions`
    info: dict = field(default_factory=dict)  # iterations, cost_history, evaluations


class Planner:
    """Shared bookkeeping: bounds, warm start, seeded noise and checked cost evaluation.

    `action_low` / `action_high` are floats or length-A sequences; a float paired with a sequence
    is broadcast to it, and two floats mean a one-dimensional action (A = 1).
    """

    def __init__(
        self,
        horizon: int,
        action_low: Bound,
        action_high: Bound,
        device: str | torch.device = "cpu",
        seed: int | None = None,
    ):
        if not isinstance(horizon, numbers.Integral) or horizon < 1:
            raise ValueError(f"horizon must be an integer >= 1; got {horizon!r}")
        self.horizon = int(horizon)
        self.device = torch.device(device)
        low = torch.as_tensor(action_low, dtype=torch.float32, device=self.device)
        high = torch.as_tensor(action_high, dtype=torch.float32, device=self.device)
        if low.dim() > 1 or high.dim() > 1:
            raise ValueError(
                f"action_low and action_high must be floats or 1-D sequences; "
                f"got shapes {tuple(low.shape)} and {tuple(high.shape)}"
            )
        if low.dim() == 1 and high.dim() == 1 and low.shape != high.shape:
            raise ValueError(
                f"action_low has {low.numel()} entries but action_high has {high.numel()}; "
                f"both must have one entry per action dimension"
            )
        low, high = torch.broadcast_tensors(low.reshape(-1), high.reshape(-1))
        if not bool((low < high).all()):
            raise ValueError(
                f"action_low must be below action_high in every dimension; "
                f"got low={low.tolist()}, high={high.tolist()}"
            )
        self.action_low = low.clone()  # (A,)
        self.action_high = high.clone()  # (A,)
        self.generator = torch.Generator(device=self.device)
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)

    @property
    def action_dim(self) -> int:
        return self.action_low.numel()

    @property
    def action_middle(self) -> torch.Tensor:
        """Centre of the box (A,): the default starting sequence."""
        return (self.action_low + self.action_high) / 2

    @property
    def half_range(self) -> torch.Tensor:
        """Half the width of the box (A,): the unit for every std and noise setting."""
        return (self.action_high - self.action_low) / 2

    def plan(self, cost_fn: CostFn, init: torch.Tensor | None = None) -> PlanResult:
        """The action sequence (K, A) that minimises `cost_fn`, starting from `init` (K, A)."""
        raise NotImplementedError

    def _initial_sequence(self, init: torch.Tensor | None) -> torch.Tensor:
        """The warm start clamped into the bounds, or the middle of the box when there is none."""
        expected = (self.horizon, self.action_dim)
        if init is None:
            return self.action_middle.expand(expected).clone()  # (K, A)
        init = torch.as_tensor(init, dtype=torch.float32, device=self.device)
        if tuple(init.shape) != expected:
            raise ValueError(
                f"init must have shape (horizon, action_dim) = {expected}; got {tuple(init.shape)}"
            )
        return init.clamp(self.action_low, self.action_high)  # (K, A)

    def _gaussian_samples(self, mean: torch.Tensor, std: torch.Tensor, count: int) -> torch.Tensor:
        """`count` sequences drawn around mean (K, A) with std (K, A), clamped into the bounds."""
        noise = torch.randn(
            (count, *mean.shape), generator=self.generator, device=self.device
        )  # (count, K, A)
        return (mean + std * noise).clamp(self.action_low, self.action_high)  # (count, K, A)

    def _evaluate(self, cost_fn: CostFn, candidates: torch.Tensor) -> torch.Tensor:
        """cost_fn on candidates (N, K, A), checked to be one cost per candidate (N,)."""
        cost = cost_fn(candidates)
        if not isinstance(cost, torch.Tensor) or cost.shape != candidates.shape[:1]:
            shape = tuple(cost.shape) if isinstance(cost, torch.Tensor) else type(cost).__name__
            raise ValueError(
                f"cost_fn must return one cost per candidate, shape ({candidates.shape[0]},); "
                f"got {shape}"
            )
        # A diverging rollout gives NaN; it must never be chosen as the best candidate.
        return torch.nan_to_num(cost.float(), nan=math.inf)  # (N,)


def _check_elites(elites: int, samples: int) -> None:
    if elites < 1 or elites > samples:
        raise ValueError(f"elites must be between 1 and samples={samples}; got elites={elites}")


def _check_at_least_one(**settings: int) -> None:
    for name, value in settings.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1; got {value}")


class CEM(Planner):
    """Cross-entropy method: sample around a Gaussian, refit it to the lowest-cost elites.

    Every population of `samples` sequences holds the current mean, the previous iteration's
    elites (with `keep_elites`, as in iCEM, Pinneri et al. 2020) and fresh Gaussian samples.
    Stds are fractions of half the action range. Returns the best sequence seen over all
    iterations rather than the final mean: the mean of several elites can sit between two good
    basins, and because the initial mean is itself a candidate a warm start is never made worse.
    For a noisy cost the best seen is optimistically costed; re-evaluate it if that matters.
    """

    def __init__(
        self,
        horizon: int,
        action_low: Bound,
        action_high: Bound,
        samples: int = 300,
        elites: int = 30,
        iterations: int = 10,
        init_std: float = 1.0,
        min_std: float = 0.05,
        momentum: float = 0.1,
        keep_elites: bool = True,
        device: str | torch.device = "cpu",
        seed: int | None = None,
    ):
        super().__init__(horizon, action_low, action_high, device, seed)
        _check_at_least_one(samples=samples, iterations=iterations)
        _check_elites(elites, samples)
        if keep_elites and samples < elites + 2:
            raise ValueError(
                f"with keep_elites=True a population holds the mean, the {elites} previous "
                f"elites and at least one new sample, so samples must be >= elites + 2; "
                f"got samples={samples}"
            )
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1); got {momentum}")
        if init_std <= 0 or min_std < 0:
            raise ValueError(f"init_std must be > 0 and min_std >= 0; got {init_std} and {min_std}")
        self.samples = samples
        self.elites = elites
        self.iterations = iterations
        self.init_std = init_std
        self.min_std = min_std
        self.momentum = momentum
        self.keep_elites = keep_elites

    @torch.no_grad()
    def plan(self, cost_fn: CostFn, init: torch.Tensor | None = None) -> PlanResult:
        mean = self._initial_sequence(init)  # (K, A)
        std = (self.init_std * self.half_range).expand_as(mean).clone()  # (K, A)
        min_std = self.min_std * self.half_range  # (A,)
        previous_elites = mean.new_empty((0, *mean.shape))  # (E or 0, K, A)
        best_actions, best_cost = mean, math.inf
        cost_history = []
        for _ in range(self.iterations):
            fresh_count = self.samples - 1 - previous_elites.shape[0]
            candidates = torch.cat(
                [mean[None], previous_elites, self._gaussian_samples(mean, std, fresh_count)]
            )  # (N, K, A)
            cost = self._evaluate(cost_fn, candidates)  # (N,)
            elite_cost, elite_index = cost.topk(self.elites, largest=False)  # (E,) sorted
            elite_actions = candidates[elite_index]  # (E, K, A)
            if elite_cost[0] < best_cost:
                best_actions, best_cost = elite_actions[0], elite_cost[0].item()
            cost_history.append(elite_cost[0].item())
            mean = self.momentum * mean + (1 - self.momentum) * elite_actions.mean(0)
            elite_std = elite_actions.std(0, unbiased=False)  # (K, A)
            std = (self.momentum * std + (1 - self.momentum) * elite_std).clamp(min=min_std)
            if self.keep_elites:
                previous_elites = elite_actions
        return PlanResult(
            actions=best_actions.clone(),
            cost=best_cost,
            info={
                "iterations": self.iterations,
                "cost_history": cost_history,
                "evaluations": self.iterations * self.samples,
            },
        )


class MPPI(Planner):
    """MPPI as in TD-MPC2 (Hansen et al. 2024): softmax-weighted refit of the top-k elites.

    Each population holds the current mean and `samples - 1` Gaussian samples around it. Elite
    weights are softmax(-(cost - min) / temperature), so `temperature` is in cost units: smaller
    values trust the single best elite more. Stds are fractions of half the action range.
    Returns the final mean (a weighted average of in-bound sequences), evaluated once more so
    that `cost` is its true cost.
    """

    def __init__(
        self,
        horizon: int,
        action_low: Bound,
        action_high: Bound,
        samples: int = 512,
        elites: int = 64,
        iterations: int = 6,
        temperature: float = 0.5,
        noise_std: float = 1.0,
        min_std: float = 0.05,
        device: str | torch.device = "cpu",
        seed: int | None = None,
    ):
        super().__init__(horizon, action_low, action_high, device, seed)
        _check_at_least_one(samples=samples, iterations=iterations)
        _check_elites(elites, samples)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0; got {temperature}")
        if noise_std <= 0 or min_std < 0:
            raise ValueError(
                f"noise_std must be > 0 and min_std >= 0; got {noise_std} and {min_std}"
            )
        self.samples = samples
        self.elites = elites
        self.iterations = iterations
        self.temperature = temperature
        self.noise_std = noise_std
        self.min_std = min_std

    @torch.no_grad()
    def plan(self, cost_fn: CostFn, init: torch.Tensor | None = None) -> PlanResult:
        mean = self._initial_sequence(init)  # (K, A)
        std = (self.noise_std * self.half_range).expand_as(mean).clone()  # (K, A)
        min_std = self.min_std * self.half_range  # (A,)
        cost_history = []
        for _ in range(self.iterations):
            candidates = torch.cat(
                [mean[None], self._gaussian_samples(mean, std, self.samples - 1)]
            )  # (N, K, A)
            cost = self._evaluate(cost_fn, candidates)  # (N,)
            elite_cost, elite_index = cost.topk(self.elites, largest=False)  # (E,)
            elite_actions = candidates[elite_index]  # (E, K, A)
            cost_history.append(elite_cost[0].item())
            # softmax subtracts the maximum logit itself, i.e. the minimum cost.
            weights = torch.softmax(-elite_cost / self.temperature, dim=0)  # (E,)
            weights = weights[:, None, None]  # (E, 1, 1)
            mean = (weights * elite_actions).sum(0)  # (K, A)
            std = (weights * (elite_actions - mean) ** 2).sum(0).sqrt().clamp(min=min_std)
        mean = mean.clamp(self.action_low, self.action_high)  # guards float rounding only
        final_cost = self._evaluate(cost_fn, mean[None])[0].item()
        return PlanResult(
            actions=mean,
            cost=final_cost,
            info={
                "iterations": self.iterations,
                "cost_history": cost_history,
                "evaluations": self.iterations * self.samples + 1,
            },
        )


class GradientPlanner(Planner):
    """Adam on the action sequences through a differentiable cost, `restarts` starts in parallel.

    Restart 0 starts at the warm start itself, the others at Gaussian perturbations of it
    (`init_noise` is a fraction of half the action range). Actions are optimised in units of half
    the range (so `lr` means the same for any bounds) and clamped back into the box after each
    step, i.e. projected gradient descent: unlike a tanh reparametrisation it reaches the bounds
    exactly and its gradient does not vanish near them. Gradients are taken with
    `torch.autograd.grad` with respect to the actions only, so a world model's parameters
    accumulate no `.grad`. Returns the lowest-cost sequence seen over all restarts and steps.
    """

    def __init__(
        self,
        horizon: int,
        action_low: Bound,
        action_high: Bound,
        iterations: int = 50,
        lr: float = 0.1,
        restarts: int = 8,
        init_noise: float = 0.5,
        device: str | torch.device = "cpu",
        seed: int | None = None,
    ):
        super().__init__(horizon, action_low, action_high, device, seed)
        _check_at_least_one(iterations=iterations, restarts=restarts)
        if lr <= 0 or init_noise < 0:
            raise ValueError(f"lr must be > 0 and init_noise >= 0; got {lr} and {init_noise}")
        self.iterations = iterations
        self.lr = lr
        self.restarts = restarts
        self.init_noise = init_noise

    def plan(self, cost_fn: CostFn, init: torch.Tensor | None = None) -> PlanResult:
        middle, half_range = self.action_middle, self.half_range  # (A,), (A,)
        start = (self._initial_sequence(init) - middle) / half_range  # (K, A) in [-1, 1]
        noise = torch.randn(
            (self.restarts - 1, *start.shape), generator=self.generator, device=self.device
        )  # (R - 1, K, A)
        normalised = torch.cat([start[None], (start + self.init_noise * noise).clamp(-1, 1)])
        normalised.requires_grad_(True)  # (R, K, A)
        optimiser = torch.optim.Adam([normalised], lr=self.lr)
        best_actions, best_cost = None, math.inf
        cost_history = []

        def keep_if_best(actions: torch.Tensor, cost: torch.Tensor) -> None:
            nonlocal best_actions, best_cost
            lowest = cost.argmin()
            if best_actions is None or cost[lowest] < best_cost:
                best_actions, best_cost = actions[lowest].detach().clone(), cost[lowest].item()

        # enable_grad: an MPC loop may well call plan() inside torch.no_grad().
        with torch.enable_grad():
            for _ in range(self.iterations):
                actions = middle + half_range * normalised  # (R, K, A)
                cost = self._evaluate(cost_fn, actions)  # (R,)
                if cost.grad_fn is None:
                    raise ValueError(
                        "GradientPlanner needs a differentiable cost_fn: its output has no "
                        "grad_fn (computed under torch.no_grad(), detached, or outside torch?). "
                        "Use CEM or MPPI for non-differentiable costs."
                    )
                keep_if_best(actions, cost)
                cost_history.append(cost.min().item())
                normalised.grad = torch.autograd.grad(cost.sum(), normalised)[0]
                optimiser.step()
                with torch.no_grad():
                    normalised.clamp_(-1, 1)
        # The last step's result has not been costed yet.
        with torch.no_grad():
            actions = middle + half_range * normalised  # (R, K, A)
            keep_if_best(actions, self._evaluate(cost_fn, actions))
        return PlanResult(
            actions=best_actions.clamp(self.action_low, self.action_high),
            cost=best_cost,
            info={
                "iterations": self.iterations,
                "cost_history": cost_history,
                "evaluations": (self.iterations + 1) * self.restarts,
            },
        )


PLANNERS: dict[str, type[Planner]] = {"cem": CEM, "mppi": MPPI, "gradient": GradientPlanner}

# Arguments every planner takes; build_planner passes them itself, so they are not "settings".
_COMMON_ARGUMENTS = {"self", "horizon", "action_low", "action_high", "device", "seed"}


def build_planner(
    name: str,
    horizon: int,
    action_low: Bound,
    action_high: Bound,
    device: str | torch.device = "cpu",
    seed: int | None = None,
    **settings,
) -> Planner:
    """Build a planner from its config name and settings; a typo gets the nearest valid name."""
    if name not in PLANNERS:
        choices = sorted(PLANNERS)
        close = difflib.get_close_matches(name, choices, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown planner '{name}'{hint} (choices: {', '.join(choices)})")
    planner_class = PLANNERS[name]
    valid = sorted(set(inspect.signature(planner_class.__init__).parameters) - _COMMON_ARGUMENTS)
    for key in settings:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ValueError(
                f"unknown setting '{key}' for planner '{name}'{hint} "
                f"(valid settings: {', '.join(valid)})"
            )
    return planner_class(horizon, action_low, action_high, device=device, seed=seed, **settings)
