"""Trajectory optimisers: minimise a batched cost over action sequences within box bounds.

Planners know nothing about models or environments. A caller hands `plan` a
`cost_fn(actions (N, K, A)) -> cost (N,)` and gets back the sequence to execute:

    planner = CEM(horizon=5, action_low=-1.0, action_high=1.0, seed=0)
    result = planner.plan(cost_fn, init=warm_start)   # result.actions: (K, A)

K is the horizon and A the action dimension. Every planner evaluates all candidates of an
iteration in one `cost_fn` call, and draws its noise from its own `torch.Generator`, so two
planners built with the same seed return the same plans. The generator advances from one `plan`
call to the next (an MPC loop gets fresh noise at every step and is still reproducible).

The planning loops never read a tensor on the host: the best cost, best actions and cost history
stay tensors (updated with `torch.where`, never with a Python `if` on a tensor), and `plan` copies
them to the host once, at the end. On a GPU nothing in a planner makes the loop wait for the
device (a cost_fn that reads its own tensors on the host still does).
A cost that is NaN or -inf counts as +inf (a diverged rollout); a candidate with an infinite cost
is never preferred to a finite one, and when every candidate is infinite a planner keeps its
current distribution and returns a finite, in-bound plan with `cost` inf.
"""

from __future__ import annotations

import inspect
import math
import numbers
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from jepa_wm.errors import did_you_mean
from jepa_wm.registry import Registry

CostFn = Callable[[torch.Tensor], torch.Tensor]  # actions (N, K, A) -> cost (N,)
Bound = float | Sequence[float] | torch.Tensor


@dataclass
class PlanResult:
    """What a planner hands back: the plan, its cost, and diagnostics for logging."""

    actions: torch.Tensor  # (K, A) the sequence to execute, within the bounds, always finite
    cost: float  # cost_fn's value for `actions`; inf (never NaN) if no candidate cost was finite
    info: dict = field(default_factory=dict)  # iterations, cost_history, evaluations


# Planners by the ``name`` of their configs/planner/ file; a new one is a Planner subclass registered with
# this decorator and its YAML file (every setting of its __init__, with a comment).
PLANNERS = Registry("planner", "planner=NAME, a file of configs/planner/")


class Planner:
    """Shared bookkeeping: bounds, warm start, seeded noise and checked cost evaluation.

    `action_low` / `action_high` are floats or length-A sequences; a float paired with a sequence
    is broadcast to it, and two floats mean a one-dimensional action (A = 1).
    """

    needs_gradients = False  # True: the cost must be differentiable in the actions

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

    def _gaussian_samples(
        self, mean: torch.Tensor, std: torch.Tensor, count: int, noise_beta: float = 0.0
    ) -> torch.Tensor:
        """`count` sequences drawn around mean (K, A) with std (K, A), clamped into the bounds.

        `noise_beta` > 0 correlates the noise along the horizon (see `_coloured_noise`).
        """
        noise = self._coloured_noise(count, noise_beta)  # (count, K, A)
        return (mean + std * noise).clamp(self.action_low, self.action_high)  # (count, K, A)

    def _coloured_noise(self, count: int, beta: float) -> torch.Tensor:
        """`count` noise sequences (count, K, A) with a 1/f^beta power spectrum along the horizon.

        beta = 0 is white noise, drawn exactly as `torch.randn` draws it. beta > 0 (iCEM, Pinneri
        et al. 2020, uses 2 to 2.5) puts more power at low frequencies, so consecutive actions
        are correlated and sampled sequences are smooth: white noise averages out over a horizon
        and rarely proposes a sustained push. Each action dimension gets its own sequence. The
        spectrum is drawn in the frequency domain and transformed back (Timmer & Koenig 1995, as
        in the `colorednoise` package iCEM uses); the constant term gets the lowest frequency's
        power, 1/K, so the noise is stationary over the horizon, and every step has unit variance.
        The lowest frequency a horizon K holds is 1/K, so for K <= 3 every beta gives white noise;
        beta = 2 correlates consecutive steps by about 0.35 at K = 5 and 0.83 at K = 20.
        """
        steps, dims = self.horizon, self.action_dim
        if beta == 0:
            return torch.randn(
                (count, steps, dims), generator=self.generator, device=self.device
            )  # (count, K, A)
        frequencies = torch.fft.rfftfreq(steps, device=self.device)  # (F,) cycles per step
        frequencies[0] = 1.0 / steps
        amplitude = frequencies ** (-beta / 2)  # (F,) power ~ 1/f^beta
        # The constant term, and the Nyquist term of an even horizon, of a real sequence is real:
        # it gets all its power in the real part; every other term counts twice (+-frequency).
        real_only = torch.zeros_like(frequencies, dtype=torch.bool)  # (F,)
        real_only[0] = True
        if steps % 2 == 0:
            real_only[-1] = True
        real, imaginary = torch.randn(
            (2, count, dims, frequencies.numel()), generator=self.generator, device=self.device
        )  # (count, A, F) each
        real = torch.where(real_only, real * math.sqrt(2), real)
        imaginary = torch.where(real_only, 0.0, imaginary)
        spectrum = torch.complex(amplitude * real, amplitude * imaginary)  # (count, A, F)
        noise = torch.fft.irfft(spectrum, n=steps)  # (count, A, K)
        # Variance of each step of irfft's output: (2 / K^2) * sum of multiplicity * amplitude^2.
        multiplicity = torch.where(real_only, 1.0, 2.0)  # (F,)
        std = (2 * (multiplicity * amplitude**2).sum()).sqrt() / steps
        return (noise / std).transpose(1, 2)  # (count, K, A)

    def _evaluate(self, cost_fn: CostFn, candidates: torch.Tensor) -> torch.Tensor:
        """cost_fn on candidates (N, K, A), checked to be one cost per candidate (N,)."""
        cost = cost_fn(candidates)
        if not isinstance(cost, torch.Tensor) or cost.shape != candidates.shape[:1]:
            shape = tuple(cost.shape) if isinstance(cost, torch.Tensor) else type(cost).__name__
            raise ValueError(
                f"cost_fn must return one cost per candidate, shape ({candidates.shape[0]},); "
                f"got {shape}"
            )
        # A diverging rollout gives NaN (or -inf): it must never be chosen as the best candidate.
        # +inf stays +inf (nan_to_num would turn it into the largest float, and NaN downstream).
        cost = cost.float()
        return torch.where(cost.isnan() | (cost == -math.inf), math.inf, cost)  # (N,)


def _check_elites(elites: int, samples: int) -> None:
    if elites < 1 or elites > samples:
        raise ValueError(f"elites must be between 1 and samples={samples}; got elites={elites}")


def _check_at_least_one(**settings: int) -> None:
    for name, value in settings.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1; got {value}")


@PLANNERS.register("cem")
class CEM(Planner):
    """Cross-entropy method: sample around a Gaussian, refit it to the lowest-cost elites.

    Every population of `samples` sequences holds the current mean, the previous iteration's
    elites (with `keep_elites`, as in iCEM, Pinneri et al. 2020) and fresh Gaussian samples.
    Stds are fractions of half the action range. `noise_beta` colours the fresh samples' noise
    along the horizon as iCEM does (0: white noise; about 2 to 2.5: smooth sequences; see
    `Planner._coloured_noise`). Returns the best sequence seen over all iterations rather than
    the final mean: the mean of several elites can sit between two good basins, and because the
    initial mean is itself a candidate a warm start is never made worse. For a noisy cost the
    best seen is optimistically costed; re-evaluate it if that matters.

    The distribution is refit to the elites with a finite cost only (an infinite cost is a failed
    rollout, not a direction to move in); when none is finite the distribution is left as it is.
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
        noise_beta: float = 0.0,
        device: str | torch.device = "cpu",
        seed: int | None = None,
    ):
        super().__init__(horizon, action_low, action_high, device, seed)
        _check_at_least_one(samples=samples, iterations=iterations)
        _check_elites(elites, samples)
        if not 0 <= noise_beta <= 4:
            raise ValueError(
                f"noise_beta must be in [0, 4] (0: white noise; iCEM uses 2 to 2.5; beyond 4 the "
                f"noise is nearly a constant offset); got {noise_beta}"
            )
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
        self.noise_beta = noise_beta

    @torch.no_grad()
    def plan(self, cost_fn: CostFn, init: torch.Tensor | None = None) -> PlanResult:
        mean = self._initial_sequence(init)  # (K, A)
        std = (self.init_std * self.half_range).expand_as(mean).clone()  # (K, A)
        min_std = self.min_std * self.half_range  # (A,)
        previous_elites = mean.new_empty((0, *mean.shape))  # (E or 0, K, A)
        best_actions, best_cost = mean, mean.new_full((), math.inf)  # (K, A), ()
        cost_history = []  # () tensors, copied to the host once at the end
        for _ in range(self.iterations):
            fresh_count = self.samples - 1 - previous_elites.shape[0]
            fresh = self._gaussian_samples(mean, std, fresh_count, self.noise_beta)
            candidates = torch.cat([mean[None], previous_elites, fresh])  # (N, K, A)
            cost = self._evaluate(cost_fn, candidates)  # (N,)
            elite_cost, elite_index = cost.topk(self.elites, largest=False)  # (E,) sorted
            elite_actions = candidates[elite_index]  # (E, K, A)
            improved = elite_cost[0] < best_cost  # () bool, stays on the device
            best_actions = torch.where(improved, elite_actions[0], best_actions)  # (K, A)
            best_cost = torch.where(improved, elite_cost[0], best_cost)  # ()
            cost_history.append(elite_cost[0])
            elite_mean, elite_std, any_finite = _finite_elite_statistics(elite_cost, elite_actions)
            new_mean = self.momentum * mean + (1 - self.momentum) * elite_mean  # (K, A)
            new_std = (self.momentum * std + (1 - self.momentum) * elite_std).clamp(min=min_std)
            mean = torch.where(any_finite, new_mean, mean)  # no finite elite: keep the fit
            std = torch.where(any_finite, new_std, std)
            if self.keep_elites:
                previous_elites = elite_actions
        *cost_history, best_cost = torch.stack([*cost_history, best_cost]).tolist()  # one sync
        return PlanResult(
            actions=best_actions,
            cost=best_cost,
            info={
                "iterations": self.iterations,
                "cost_history": cost_history,
                "evaluations": self.iterations * self.samples,
            },
        )


def _finite_elite_statistics(
    elite_cost: torch.Tensor, elite_actions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean and std (K, A) of the elites (E, K, A) whose cost (E,) is finite, and whether any is.

    With every elite finite these are exactly `mean(0)` and `std(0, unbiased=False)` (the same
    bits as before infinite costs were masked); the masked statistics are selected on the device,
    so no Python branch waits for the costs. With no finite elite the statistics are meaningless
    (NaN) and the caller must keep its previous fit.
    """
    finite = elite_cost.isfinite()  # (E,)
    count = finite.sum()  # ()
    weights = (finite / count)[:, None, None]  # (E, 1, 1), NaN when count is 0
    masked_mean = (weights * elite_actions).sum(0)  # (K, A)
    masked_std = (weights * (elite_actions - masked_mean) ** 2).sum(0).sqrt()  # (K, A)
    all_finite = count == finite.numel()  # ()
    mean = torch.where(all_finite, elite_actions.mean(0), masked_mean)  # (K, A)
    std = torch.where(all_finite, elite_actions.std(0, unbiased=False), masked_std)  # (K, A)
    return mean, std, count > 0


@PLANNERS.register("mppi")
class MPPI(Planner):
    """MPPI: refit a Gaussian to the top-k elites, each weighted by a softmax of its cost.

    Each population holds the current mean and `samples - 1` Gaussian samples around it. The
    elite costs are first normalised to [0, 1] over the elites with a finite cost,
    (cost - min) / (max - min), and weighted softmax(-normalised / temperature): `temperature` is
    unit-free, the weight of the worst elite relative to the best is exp(-1 / temperature) for a
    cost of any scale (a true distance in metres, ~0.01, or a latent distance, ~1, weight alike).
    The default 0.1 gives the worst of the 64 elites exp(-10) ~ 5e-5 of the best one's weight, so
    the refit follows the few best elites (a lone good warm start is not averaged away by 63
    random ones); 0.5 gives it exp(-2) ~ 0.14, close to CEM's plain elite mean. On synthetic
    deterministic costs (bowls, Rastrigin, a narrow basin, a point-mass MPC loop) 0.1 did best
    or near best among 0.05 to 1; 0.2 to 0.5 did better on costs with per-candidate noise and on
    a cold 30-dimensional bowl, where sharp weights shrink the std too early. Elites whose cost is
    infinite get no weight; when all are, the distribution is left as it is. Stds are fractions
    of half the action range. Returns the final mean (a weighted average of in-bound sequences),
    evaluated once more so that `cost` is its true cost.

    The defaults share TD-MPC2's (Hansen et al. 2024) sample budget: 512 samples, 64 elites,
    6 iterations, min_std 0.05. The rest differs. TD-MPC2 scores elites by
    exp(temperature * (value - max value)) with temperature 0.5: an inverse temperature on
    unnormalised returns, so its sharpness depends on the value scale; ours divides normalised
    costs by the temperature. TD-MPC2 also adds 24 trajectories from its learned policy to every
    population (ours has no policy prior), starts at std max_std = 2 and clamps the std to it
    (ours starts at `noise_std` and has no upper clamp), plans 3 steps ahead (ours: the MPC
    config's horizon), and executes one elite sampled by its score rather than the mean. Our
    population also holds the current mean. Both are warm-started with the previous plan, shifted
    (ours by `MPCController`).
    """

    def __init__(
        self,
        horizon: int,
        action_low: Bound,
        action_high: Bound,
        samples: int = 512,
        elites: int = 64,
        iterations: int = 6,
        temperature: float = 0.1,
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
        cost_history = []  # () tensors, copied to the host once at the end
        for _ in range(self.iterations):
            candidates = torch.cat(
                [mean[None], self._gaussian_samples(mean, std, self.samples - 1)]
            )  # (N, K, A)
            cost = self._evaluate(cost_fn, candidates)  # (N,)
            elite_cost, elite_index = cost.topk(self.elites, largest=False)  # (E,) sorted
            elite_actions = candidates[elite_index]  # (E, K, A)
            cost_history.append(elite_cost[0])
            weights = self._elite_weights(elite_cost)[:, None, None]  # (E, 1, 1)
            new_mean = (weights * elite_actions).sum(0)  # (K, A)
            new_std = (weights * (elite_actions - new_mean) ** 2).sum(0).sqrt().clamp(min=min_std)
            any_finite = elite_cost[0].isfinite()  # () the lowest elite cost comes first
            mean = torch.where(any_finite, new_mean, mean)  # no finite elite: keep the fit
            std = torch.where(any_finite, new_std, std)
        mean = mean.clamp(self.action_low, self.action_high)  # guards float rounding only
        final_cost = self._evaluate(cost_fn, mean[None])[0]  # ()
        *cost_history, final_cost = torch.stack([*cost_history, final_cost]).tolist()  # one sync
        return PlanResult(
            actions=mean,
            cost=final_cost,
            info={
                "iterations": self.iterations,
                "cost_history": cost_history,
                "evaluations": self.iterations * self.samples + 1,
            },
        )

    def _elite_weights(self, elite_cost: torch.Tensor) -> torch.Tensor:
        """Softmax weights (E,) of the elites from their ascending costs (E,), whatever the scale.

        Costs are normalised to [0, 1] over the finite ones, so multiplying the cost by any
        positive constant gives the same weights; infinite costs get weight 0. Equal finite costs
        (a flat cost) give equal weights instead of dividing by zero. All infinite: NaN, which
        the caller discards.
        """
        finite = elite_cost.isfinite()  # (E,)
        lowest = elite_cost[0]  # ()
        highest = torch.where(finite, elite_cost, lowest).max()  # () highest finite cost
        spread = highest - lowest  # ()
        normalised = (elite_cost - lowest) / torch.where(spread > 0, spread, 1.0)  # (E,) in [0, 1]
        logits = torch.where(finite, -normalised / self.temperature, -math.inf)  # (E,)
        return torch.softmax(logits, dim=0)  # (E,)


@PLANNERS.register("gradient")
class GradientPlanner(Planner):
    """Adam on the action sequences through a differentiable cost, `restarts` starts in parallel.

    It needs a cost it can differentiate (``needs_gradients``): the simulator oracle plans with
    ``oracle_planner`` of the plan config instead.

    Restart 0 starts at the warm start itself, the others at Gaussian perturbations of it
    (`init_noise` is a fraction of half the action range). Actions are optimised in units of half
    the range (so `lr` means the same for any bounds) and clamped back into the box after each
    step, i.e. projected gradient descent: unlike a tanh reparametrisation it reaches the bounds
    exactly and its gradient does not vanish near them. Gradients are taken with
    `torch.autograd.grad` with respect to the actions only, so a world model's parameters
    accumulate no `.grad`. Returns the lowest-cost sequence seen over all restarts and steps.
    Non-finite gradients (from a rollout with an infinite or NaN cost) are zeroed, so one failed
    restart cannot turn the sequences or Adam's moments into NaN.

    Bookkeeping stays on the device; the only host reads in the loop are Adam's own step
    counter, which PyTorch keeps on the CPU (no device synchronisation).
    """

    needs_gradients = True

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
        # Restart 0 is the warm start: returned (with cost inf) if no cost is ever finite.
        best_actions = middle + half_range * start  # (K, A)
        best_cost = start.new_full((), math.inf)  # ()
        cost_history = []  # () tensors, copied to the host once at the end

        def keep_if_best(actions: torch.Tensor, cost: torch.Tensor) -> None:
            nonlocal best_actions, best_cost
            lowest_cost, lowest = cost.detach().min(0)  # (), () on the device
            improved = lowest_cost < best_cost  # ()
            # index_select with a (1,) index: indexing with a 0-dim tensor reads it on the host.
            lowest_actions = actions.detach().index_select(0, lowest[None])[0]  # (K, A)
            best_actions = torch.where(improved, lowest_actions, best_actions)
            best_cost = torch.where(improved, lowest_cost, best_cost)

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
                cost_history.append(cost.detach().min())
                gradient = torch.autograd.grad(cost.sum(), normalised)[0]  # (R, K, A)
                normalised.grad = torch.nan_to_num(gradient, nan=0.0, posinf=0.0, neginf=0.0)
                optimiser.step()
                with torch.no_grad():
                    normalised.clamp_(-1, 1)
        # The last step's result has not been costed yet.
        with torch.no_grad():
            actions = middle + half_range * normalised  # (R, K, A)
            keep_if_best(actions, self._evaluate(cost_fn, actions))
        *cost_history, best_cost = torch.stack([*cost_history, best_cost]).tolist()  # one sync
        return PlanResult(
            actions=best_actions.clamp(self.action_low, self.action_high),
            cost=best_cost,
            info={
                "iterations": self.iterations,
                "cost_history": cost_history,
                "evaluations": (self.iterations + 1) * self.restarts,
            },
        )



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
    planner_class = PLANNERS[name]
    valid = sorted(set(inspect.signature(planner_class.__init__).parameters) - _COMMON_ARGUMENTS)
    for key in settings:
        if key not in valid:
            raise ValueError(
                f"unknown setting '{key}' for planner '{name}'{did_you_mean(key, valid)} "
                f"(valid settings: {', '.join(valid)})"
            )
    return planner_class(horizon, action_low, action_high, device=device, seed=seed, **settings)
