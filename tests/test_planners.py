import inspect
import math
import sys
from pathlib import Path

import pytest
import torch
import yaml
from jepa_wm.planning import CEM, MPPI, GradientPlanner, build_planner

PLANNER_NAMES = ["cem", "mppi", "gradient"]
# Precision each planner reaches on the quadratic bowl at the settings below.
TOLERANCE = {"cem": 0.05, "mppi": 0.05, "gradient": 0.01}
# Constant-lr Adam oscillates around the optimum; 100 steps settle it below 0.01 (50 give ~0.03).
PRECISE_SETTINGS = {"cem": {}, "mppi": {}, "gradient": {"iterations": 100}}

TARGET = torch.tensor(
    [[0.3, -0.5], [0.1, 0.7], [-0.8, 0.2], [0.5, 0.5], [-0.2, -0.9]]
)  # (K, A) = (5, 2), inside [-1, 1]


def quadratic_cost(target: torch.Tensor):
    def cost_fn(actions: torch.Tensor) -> torch.Tensor:  # (N, K, A) -> (N,)
        return ((actions - target) ** 2).sum((1, 2))

    return cost_fn


# Rastrigin per step (A = 2): a grid of local minima 0.4 apart, the global one at (0.5, -0.3).
RASTRIGIN_OPTIMUM = torch.tensor([0.5, -0.3])


def rastrigin_cost(actions: torch.Tensor) -> torch.Tensor:  # (N, K, 2) -> (N,)
    scaled = (actions - RASTRIGIN_OPTIMUM) * 2.5  # (N, K, 2)
    return (scaled**2 - 10 * torch.cos(2 * math.pi * scaled) + 10).sum((1, 2))


def noisy_quadratic_cost(noise_seed: int = 0):
    """A stochastic cost (like a model with dropout) whose noise is reproducible on its own."""
    noise_generator = torch.Generator().manual_seed(noise_seed)
    bowl = quadratic_cost(TARGET)

    def cost_fn(actions: torch.Tensor) -> torch.Tensor:  # (N, K, A) -> (N,)
        noise = torch.randn(actions.shape[0], generator=noise_generator)  # (N,)
        return bowl(actions) + 0.1 * noise

    return cost_fn


def in_bounds(actions: torch.Tensor, low, high) -> bool:
    low, high = torch.as_tensor(low), torch.as_tensor(high)
    return bool(((actions >= low) & (actions <= high)).all())


@pytest.mark.parametrize("name", PLANNER_NAMES)
def test_planner_finds_the_minimum_of_a_quadratic_cost(name):
    planner = build_planner(name, 5, -1.0, [1.0, 1.0], seed=0, **PRECISE_SETTINGS[name])
    result = planner.plan(quadratic_cost(TARGET))

    assert result.actions.shape == TARGET.shape
    assert (result.actions - TARGET).abs().max() < TOLERANCE[name]
    true_cost = quadratic_cost(TARGET)(result.actions[None]).item()
    assert result.cost == pytest.approx(true_cost, abs=1e-6)


@pytest.mark.parametrize("name", PLANNER_NAMES)
def test_optimum_outside_the_bounds_is_met_on_the_bound(name):
    low, high = [-1.0, 0.0], [1.0, 0.5]  # per-dimension bounds
    target = torch.tensor([1.5, -0.7]).expand(3, 2)  # (K, A) outside the box in both dims
    planner = build_planner(name, 3, low, high, seed=0)
    result = planner.plan(quadratic_cost(target))

    assert in_bounds(result.actions, low, high)
    assert torch.allclose(result.actions, torch.tensor([1.0, 0.0]).expand(3, 2), atol=0.05)


@pytest.mark.parametrize("name", PLANNER_NAMES)
def test_every_candidate_and_the_plan_stay_within_the_bounds(name):
    low, high = [-0.3, -2.0], [0.2, 1.0]
    seen_out_of_bounds = []

    def cost_fn(actions):  # (N, K, A) -> (N,)
        seen_out_of_bounds.append(not in_bounds(actions, low, high))
        return rastrigin_cost(actions)

    result = build_planner(name, 4, low, high, seed=0).plan(cost_fn)

    assert not any(seen_out_of_bounds)
    assert in_bounds(result.actions, low, high)


@pytest.mark.parametrize("name", ["cem", "mppi"])
def test_sampling_planners_usually_find_the_global_minimum_of_a_multimodal_cost(name):
    found = 0
    for seed in range(10):
        result = build_planner(name, 1, -1.0, [1.0, 1.0], seed=seed).plan(rastrigin_cost)
        found += bool((result.actions[0] - RASTRIGIN_OPTIMUM).abs().max() < 0.05)
    assert found > 5


def test_single_start_gradient_descent_gets_stuck_in_a_local_minimum_of_the_multimodal_cost():
    """The contrast that shows the Rastrigin test above is not trivially easy."""
    result = GradientPlanner(1, -1.0, [1.0, 1.0], restarts=1, seed=0).plan(rastrigin_cost)

    assert (result.actions[0] - RASTRIGIN_OPTIMUM).abs().max() > 0.3
    assert result.cost > 1.0


@pytest.mark.parametrize("name", PLANNER_NAMES)
def test_same_seed_gives_the_same_plan_and_different_seeds_differ(name):
    def plan_with(seed):
        planner = build_planner(name, 5, -1.0, [1.0, 1.0], seed=seed)
        return planner.plan(noisy_quadratic_cost()).actions

    assert torch.equal(plan_with(0), plan_with(0))
    assert not torch.equal(plan_with(0), plan_with(1))


def narrow_basin_cost(actions: torch.Tensor) -> torch.Tensor:  # (N, K, A) -> (N,)
    """0 at TARGET, exactly 1 (flat, no gradient) more than ~1 from it, e.g. at the box's middle:
    neither sampling nor gradients find the basin from a cold start in a few iterations."""
    squared_distance = ((actions - TARGET) ** 2).sum((1, 2))  # (N,)
    return 1 - torch.exp(-squared_distance / (2 * 0.2**2))


@pytest.mark.parametrize("name", PLANNER_NAMES)
def test_warm_start_near_the_optimum_is_used(name):
    """With the same small budget, a warm start in the narrow basin ends far lower than a cold
    start, which sees a flat cost. Fails if `init` is ignored."""
    init = TARGET + 0.02
    cold = build_planner(name, 5, -1.0, [1.0, 1.0], seed=0, iterations=2).plan(narrow_basin_cost)
    warm = build_planner(name, 5, -1.0, [1.0, 1.0], seed=0, iterations=2).plan(
        narrow_basin_cost, init=init
    )

    assert cold.cost > 0.99
    assert warm.cost < 0.2


@pytest.mark.parametrize("name", ["cem", "gradient"])
def test_planners_that_cost_the_warm_start_never_return_worse(name):
    """CEM and GradientPlanner cost their starting sequence and return the best seen."""
    init = TARGET + 0.02
    init_cost = narrow_basin_cost(init[None]).item()
    for seed in range(3):
        planner = build_planner(name, 5, -1.0, [1.0, 1.0], seed=seed, iterations=1)
        assert planner.plan(narrow_basin_cost, init=init).cost <= init_cost


def test_gradient_planner_rejects_a_non_differentiable_cost():
    def detached_cost(actions):
        return quadratic_cost(TARGET)(actions).detach()

    with pytest.raises(ValueError, match="GradientPlanner needs a differentiable cost_fn"):
        GradientPlanner(5, -1.0, [1.0, 1.0], seed=0).plan(detached_cost)


def test_gradient_planner_works_inside_no_grad_and_leaves_model_gradients_alone():
    model = torch.nn.Linear(2, 2)

    def model_cost(actions):  # (N, K, A) -> (N,)
        return (model(actions) ** 2).sum((1, 2))

    with torch.no_grad():
        GradientPlanner(5, -1.0, [1.0, 1.0], iterations=3, seed=0).plan(model_cost)
    assert all(parameter.grad is None for parameter in model.parameters())


@pytest.mark.parametrize(
    "name, population, iterations, final_evaluation",
    [("cem", 40, 4, []), ("mppi", 40, 4, [1]), ("gradient", 6, 4, [6])],
)
def test_each_iteration_makes_one_batched_cost_call(name, population, iterations, final_evaluation):
    batch_sizes = []
    bowl = quadratic_cost(TARGET)

    def counting_cost(actions):
        batch_sizes.append(actions.shape[0])
        return bowl(actions)

    size_setting = "restarts" if name == "gradient" else "samples"
    settings = {size_setting: population, "iterations": iterations}
    if name != "gradient":
        settings["elites"] = 5
    result = build_planner(name, 5, -1.0, [1.0, 1.0], seed=0, **settings).plan(counting_cost)

    # Planners that return a sequence they have not costed yet evaluate it once at the end.
    assert batch_sizes == [population] * iterations + final_evaluation
    assert result.info["evaluations"] == sum(batch_sizes)
    assert len(result.info["cost_history"]) == iterations


def test_build_planner_suggests_the_nearest_name_for_an_unknown_planner():
    with pytest.raises(ValueError) as error:
        build_planner("cme", 5, -1.0, 1.0)
    assert str(error.value) == (
        "unknown planner 'cme'; did you mean 'cem'? (planner=NAME, a file of configs/planner/; choices: cem, gradient, mppi)"
    )


def test_build_planner_names_the_valid_settings_for_an_unknown_setting():
    with pytest.raises(ValueError) as error:
        build_planner("mppi", 5, -1.0, 1.0, temprature=0.1)
    message = str(error.value)
    assert "'temprature'" in message and "did you mean 'temperature'" in message
    assert "elites, iterations, min_std, noise_std, samples, temperature" in message


def test_build_planner_passes_settings_to_the_planner():
    planner = build_planner("cem", 7, -1.0, 1.0, samples=50, elites=5, keep_elites=False)
    assert isinstance(planner, CEM)
    assert (planner.horizon, planner.samples, planner.elites) == (7, 50, 5)
    assert planner.keep_elites is False


@pytest.mark.parametrize(
    "make_planner, message",
    [
        (lambda: CEM(5, -1.0, 1.0, samples=20, elites=30), "samples=20; got elites=30"),
        (lambda: MPPI(5, -1.0, 1.0, samples=20, elites=30), "samples=20; got elites=30"),
        (lambda: CEM(5, -1.0, 1.0, samples=31, elites=30), r"samples must be >= elites \+ 2"),
        (lambda: CEM(0, -1.0, 1.0), "horizon must be an integer >= 1; got 0"),
        (lambda: MPPI(5, -1.0, 1.0, temperature=0.0), "temperature must be > 0; got 0.0"),
        (lambda: CEM(5, -1.0, 1.0, noise_beta=-1.0), r"noise_beta must be in \[0, 4\].*got -1.0"),
        (lambda: GradientPlanner(5, [-1.0, 1.0], 1.0), r"low=\[-1.0, 1.0\], high=\[1.0, 1.0\]"),
        (lambda: CEM(5, [-1.0, -1.0], [1.0, 1.0, 1.0]), "action_low has 2 entries but action_high"),
    ],
)
def test_invalid_settings_are_rejected_with_what_was_given(make_planner, message):
    with pytest.raises(ValueError, match=message):
        make_planner()


@pytest.mark.parametrize("name", PLANNER_NAMES)
def test_warm_start_of_the_wrong_shape_is_rejected(name):
    planner = build_planner(name, 5, -1.0, [1.0, 1.0], seed=0)
    with pytest.raises(ValueError, match=r"\(horizon, action_dim\) = \(5, 2\); got \(4, 2\)"):
        planner.plan(quadratic_cost(TARGET), init=torch.zeros(4, 2))


def test_cost_fn_must_return_one_cost_per_candidate():
    with pytest.raises(ValueError, match=r"shape \(300,\); got \(300, 1\)"):
        CEM(5, -1.0, [1.0, 1.0], seed=0).plan(lambda actions: actions.sum((1, 2))[:, None])


@pytest.mark.parametrize("scale", [100.0, 0.01])
def test_mppi_plan_does_not_depend_on_the_scale_of_the_cost(scale):
    """Elite costs are normalised before the temperature: metres or latent units plan alike."""
    bowl = quadratic_cost(TARGET)
    reference = MPPI(5, -1.0, [1.0, 1.0], seed=0).plan(bowl)
    scaled = MPPI(5, -1.0, [1.0, 1.0], seed=0).plan(lambda actions: scale * bowl(actions))

    assert torch.allclose(scaled.actions, reference.actions, atol=1e-5)
    assert scaled.cost == pytest.approx(scale * reference.cost, rel=1e-4)


@pytest.mark.parametrize("scale", [0.01, 1.0, 100.0])
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_mppi_temperature_sets_the_worst_elites_weight_relative_to_the_best(scale, temperature):
    """The documented meaning: weight(worst elite) / weight(best) = exp(-1 / temperature)."""
    planner = MPPI(5, -1.0, 1.0, temperature=temperature)
    elite_cost = scale * torch.tensor([0.2, 0.3, 0.7, 1.4, math.inf])  # ascending, as topk gives

    weights = planner._elite_weights(elite_cost)

    assert weights.sum().item() == pytest.approx(1.0)
    assert (weights[3] / weights[0]).item() == pytest.approx(math.exp(-1 / temperature), rel=1e-4)
    assert weights[4].item() == 0.0  # an infinite cost gets no weight


def test_mppi_weights_a_flat_cost_uniformly():
    weights = MPPI(5, -1.0, 1.0)._elite_weights(torch.full((4,), 0.3))
    assert torch.allclose(weights, torch.full((4,), 0.25))


def overflowing_cost(actions: torch.Tensor) -> torch.Tensor:  # (N, K, A) -> (N,) all +inf
    """A diverging rollout: inf everywhere, and an inf gradient for the gradient planner."""
    return torch.exp(200 + quadratic_cost(TARGET)(actions))  # exp(200) overflows float32


def nan_cost(actions: torch.Tensor) -> torch.Tensor:  # (N, K, A) -> (N,) all NaN
    return quadratic_cost(TARGET)(actions) * math.nan


@pytest.mark.parametrize("cost_fn", [overflowing_cost, nan_cost], ids=["inf", "nan"])
@pytest.mark.parametrize("name", PLANNER_NAMES)
def test_all_infinite_or_nan_costs_give_a_finite_plan_and_an_infinite_cost(name, cost_fn):
    low, high = [-1.0, 0.0], [1.0, 0.5]
    result = build_planner(name, 5, low, high, seed=0, iterations=3).plan(cost_fn)

    assert torch.isfinite(result.actions).all()
    assert in_bounds(result.actions, low, high)
    assert result.cost == math.inf
    assert result.info["cost_history"] == [math.inf] * 3


@pytest.mark.parametrize("name", PLANNER_NAMES)
def test_a_nan_cost_does_not_poison_later_candidates(name):
    """One candidate's NaN cost (and, for the gradient planner, its NaN gradient) in one
    iteration must leave every later candidate finite."""
    bowl = quadratic_cost(TARGET)
    seen_non_finite = []

    def cost_fn(actions):  # (N, K, A) -> (N,)
        seen_non_finite.append(not bool(torch.isfinite(actions).all()))
        cost = bowl(actions)
        if len(seen_non_finite) == 2:  # the second call: candidate 1 diverges
            cost = cost * torch.where(torch.arange(cost.shape[0]) == 1, math.nan, 1.0)
        return cost

    result = build_planner(name, 5, -1.0, [1.0, 1.0], seed=0, iterations=5).plan(cost_fn)

    assert not any(seen_non_finite)
    assert torch.isfinite(result.actions).all() and math.isfinite(result.cost)


def corner_only_cost(actions: torch.Tensor) -> torch.Tensor:  # (N, K, A) -> (N,)
    """The bowl, but +inf unless the first action lies in a small corner of the box, which a few
    percent of the first population reach; the best finite sequence is the corner (0.8, -0.8)."""
    first = actions[:, 0]  # (N, A)
    allowed = (first[:, 0] > 0.8) & (first[:, 1] < -0.8)  # (N,)
    return torch.where(allowed, quadratic_cost(TARGET)(actions), math.inf)


@pytest.mark.parametrize("name", ["cem", "mppi"])
def test_infinite_costs_for_all_but_a_few_candidates_give_a_finite_plan(name):
    finite_counts = []

    def counting_cost(actions):
        cost = corner_only_cost(actions)
        finite_counts.append(int(cost.isfinite().sum()))
        return cost

    planner = build_planner(name, 5, -1.0, [1.0, 1.0], seed=0)
    result = planner.plan(counting_cost)

    assert torch.isfinite(result.actions).all() and in_bounds(result.actions, -1.0, 1.0)
    assert math.isfinite(result.cost)
    assert result.cost == pytest.approx(corner_only_cost(result.actions[None]).item())
    assert torch.allclose(result.actions[0], torch.tensor([0.8, -0.8]), atol=0.05)
    # The first population has a few percent finite; refit to those only (not to the infinite
    # elites), the distribution moves into the corner: most of the next population is finite.
    assert finite_counts[0] < 0.1 * planner.samples
    assert finite_counts[1] > 0.4 * planner.samples


def test_gradient_planner_with_infinite_costs_around_the_warm_start_keeps_a_finite_plan():
    """Restarts that leave the corner cost inf (and get no gradient); the best finite one wins."""
    init = torch.tensor([[0.9, -0.9]]).expand(5, 2)  # (K, A) inside the corner
    result = GradientPlanner(5, -1.0, [1.0, 1.0], seed=0).plan(corner_only_cost, init=init)

    assert torch.isfinite(result.actions).all() and in_bounds(result.actions, -1.0, 1.0)
    assert result.cost == pytest.approx(corner_only_cost(result.actions[None]).item())
    assert result.cost <= corner_only_cost(init[None]).item()


# Tensor methods that copy a value to the host: on a GPU each one waits for all queued work.
HOST_READS = ["item", "tolist", "cpu", "numpy", "__float__", "__int__", "__index__", "__bool__"]


def count_host_reads_in_planners(monkeypatch) -> list[str]:
    """Patch HOST_READS to record every call made from planning/planners.py itself (not from the
    test's cost_fn, nor from torch's own Adam, whose step counter lives on the CPU anyway)."""
    import jepa_wm.planning.planners

    calls = []
    for method in HOST_READS:
        original = getattr(torch.Tensor, method)

        def recording(self, *args, _original=original, _method=method, **kwargs):
            caller = sys._getframe(1)
            if caller.f_code.co_filename == jepa_wm.planning.planners.__file__:
                calls.append(f"{_method} at line {caller.f_lineno}")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, recording)
    return calls


@pytest.mark.parametrize("name", PLANNER_NAMES)
def test_planning_loops_never_read_a_tensor_on_the_host(name, monkeypatch):
    """Host reads happen once at the end of plan(), however many iterations: none in the loop."""
    bowl = quadratic_cost(TARGET)
    calls = count_host_reads_in_planners(monkeypatch)
    reads = {}
    for iterations in (2, 5):
        planner = build_planner(name, 5, -1.0, [1.0, 1.0], seed=0, iterations=iterations)
        del calls[:]
        planner.plan(bowl, init=TARGET + 0.1)
        reads[iterations] = list(calls)

    assert reads[2] == reads[5]
    assert len(reads[5]) <= 1, reads[5]


def lag_one_autocorrelation(noise: torch.Tensor) -> float:
    """Correlation of consecutive steps (N, K, A) along the horizon, pooled over N and A."""
    centred = noise - noise.mean((0, 1), keepdim=True)
    return ((centred[:, 1:] * centred[:, :-1]).mean() / centred.pow(2).mean()).item()


def test_white_cem_noise_is_todays_gaussian_noise():
    """noise_beta=0 draws exactly what CEM drew before coloured noise existed."""
    mean, std = TARGET * 0.5, torch.full((5, 2), 0.3)  # (K, A)
    planner = CEM(5, -1.0, [1.0, 1.0], noise_beta=0.0, seed=3)
    expected_noise = torch.randn((7, 5, 2), generator=torch.Generator().manual_seed(3))

    samples = planner._gaussian_samples(mean, std, 7, planner.noise_beta)

    assert torch.equal(samples, (mean + std * expected_noise).clamp(-1.0, 1.0))


@pytest.mark.parametrize("horizon", [19, 20])
def test_coloured_noise_is_correlated_along_the_horizon_with_unit_variance(horizon):
    white = CEM(horizon, -1.0, 1.0, seed=0)._coloured_noise(4000, beta=0.0)  # (N, K, A)
    pink = CEM(horizon, -1.0, 1.0, seed=0)._coloured_noise(4000, beta=2.0)  # (N, K, A)

    assert white.shape == pink.shape == (4000, horizon, 1)
    assert abs(lag_one_autocorrelation(white)) < 0.05
    assert lag_one_autocorrelation(pink) > 0.5
    # Unit variance at every step of the horizon, for odd and even horizons alike.
    assert torch.allclose(pink.var(0), torch.ones(horizon, 1), atol=0.1)
    assert torch.allclose(white.var(0), torch.ones(horizon, 1), atol=0.1)


def test_coloured_noise_comes_from_the_planners_generator():
    def noise(seed):
        return CEM(20, -1.0, [1.0, 1.0], seed=seed)._coloured_noise(3, beta=2.5)

    assert torch.equal(noise(0), noise(0))
    assert not torch.equal(noise(0), noise(1))


def test_cem_with_coloured_noise_keeps_every_candidate_within_the_bounds():
    low, high = [-0.3, -2.0], [0.2, 1.0]
    seen_out_of_bounds = []

    def cost_fn(actions):  # (N, K, A) -> (N,)
        seen_out_of_bounds.append(not in_bounds(actions, low, high))
        return rastrigin_cost(actions)

    planner = build_planner("cem", 20, low, high, seed=0, noise_beta=2.5, iterations=3)
    result = planner.plan(cost_fn)

    assert not any(seen_out_of_bounds)
    assert in_bounds(result.actions, low, high)


def test_coloured_noise_finds_a_smooth_optimum_faster_than_white_noise():
    """Why iCEM colours its noise: a smooth target over a long horizon is found in fewer
    iterations. (On TARGET, which jumps from step to step, white noise does better.)"""
    steps = torch.linspace(0, 1, 20)  # (K,)
    smooth_target = torch.stack([0.8 * torch.sin(math.pi * steps), 0.6 - 0.9 * steps], 1)  # (K, A)
    cost_fn = quadratic_cost(smooth_target)

    def mean_cost(noise_beta):
        return sum(
            CEM(20, -1.0, [1.0, 1.0], iterations=3, noise_beta=noise_beta, seed=seed)
            .plan(cost_fn)
            .cost
            for seed in range(5)
        ) / 5

    assert mean_cost(2.0) < 0.5 * mean_cost(0.0)


@pytest.mark.parametrize("name", PLANNER_NAMES)
def test_planner_configs_build_and_match_the_constructor_defaults(name):
    """configs/planner/<name>.yaml is what runs; the constructor defaults are what the docstrings
    and tests describe. They must not drift apart (e.g. MPPI's temperature)."""
    path = Path(__file__).resolve().parents[1] / "configs" / "planner" / f"{name}.yaml"
    settings = yaml.safe_load(path.read_text())
    assert settings.pop("name") == name
    planner = build_planner(name, 5, -1.0, [1.0, 1.0], seed=0, **settings)
    defaults = {
        key: parameter.default
        for key, parameter in inspect.signature(type(planner).__init__).parameters.items()
        if parameter.default is not inspect.Parameter.empty and key not in ("device", "seed")
    }
    assert settings == defaults
