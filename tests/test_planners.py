import math

import pytest
import torch

from planning import CEM, MPPI, GradientPlanner, build_planner

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


@pytest.mark.parametrize("name", ["cem", "gradient"])
def test_warm_start_near_the_optimum_needs_fewer_iterations(name):
    """CEM and GradientPlanner cost their starting sequence, so a warm start is never made worse."""
    cost_fn = quadratic_cost(TARGET)
    cold = build_planner(name, 5, -1.0, [1.0, 1.0], seed=0).plan(cost_fn)
    warm = build_planner(name, 5, -1.0, [1.0, 1.0], seed=0, iterations=2).plan(
        cost_fn, init=TARGET + 0.002
    )

    assert warm.info["iterations"] < cold.info["iterations"]
    assert warm.cost <= cold.cost


def test_mppi_warm_start_beats_a_cold_start_with_the_same_iterations():
    """MPPI restarts its noise at full width and returns the mean, so a warm start speeds it up
    but does not make it exact at once."""
    cost_fn = quadratic_cost(TARGET)
    cold = MPPI(5, -1.0, [1.0, 1.0], iterations=3, seed=0).plan(cost_fn)
    warm = MPPI(5, -1.0, [1.0, 1.0], iterations=3, seed=0).plan(cost_fn, init=TARGET + 0.002)
    assert warm.cost < cold.cost


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
        "unknown planner 'cme'; did you mean 'cem'? (choices: cem, gradient, mppi)"
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
        (lambda: CEM(5, -1.0, 1.0, samples=31, elites=30), "samples must be >= elites \+ 2"),
        (lambda: CEM(0, -1.0, 1.0), "horizon must be an integer >= 1; got 0"),
        (lambda: MPPI(5, -1.0, 1.0, temperature=0.0), "temperature must be > 0; got 0.0"),
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
