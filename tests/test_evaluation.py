"""Latent costs, the simulator oracle, MPC and the goal-reaching evaluation."""

import json

import numpy as np
import pytest
import torch

from data.envs import make_env
from jepa_wm import CheckpointError, JEPAWorldModel
from jepa_wm.config import ConfigError, compose, load_group, to_dict
from planning.costs import LatentGoalCost, SimulatorCost, latent_distance
from planning.evaluate import evaluate, run_episode, wilson_interval
from planning.experiment import run_plan
from planning.mpc import MPCController, RandomController, to_env_actions
from planning.planners import CEM, PlanResult


@pytest.fixture(scope="module")
def reacher_env():
    env = make_env(to_dict(load_group("env", "reacher-easy")))
    yield env
    env.close()


def save_model_checkpoint(model, path):
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return path


def tiny_pixel_model(image_size=64):
    cfg = compose("train", ["data.path=unused", "model.encoder.channels=[8,16,16,16]", "model.encoder.embed_dim=8",
                            "model.predictor.hidden_dim=32"]).model
    env_info = {"config": {"name": "reacher-easy"}}
    return JEPAWorldModel(cfg, (image_size, image_size, 3), 2 * cfg.frameskip, env=env_info).eval()


def test_wilson_interval_contains_the_rate_and_stays_in_bounds():
    assert wilson_interval(0, 20)[0] == 0.0 and 0.0 < wilson_interval(0, 20)[1] < 0.2
    low, high = wilson_interval(10, 20)
    assert low < 0.5 < high and high - low == pytest.approx(0.40, abs=0.02)
    assert wilson_interval(20, 20)[1] == 1.0


def test_latent_distance_l2_and_cosine():
    goal = torch.ones(1, 4)
    predicted = torch.stack([torch.ones(1, 4), -torch.ones(1, 4)])[None]  # (1, 2, 1, 4)
    assert torch.allclose(latent_distance(predicted, goal, "l2"), torch.tensor([[0.0, 4.0]]))
    assert torch.allclose(latent_distance(predicted, goal, "cosine"), torch.tensor([[0.0, 2.0]]))


def test_latent_cost_scores_every_candidate_from_the_current_observation(reacher_env):
    model = tiny_pixel_model()
    obs = reacher_env.reset(seed=0)
    cost_fn = LatentGoalCost(model, steps="all").make_cost(reacher_env, [obs], [])
    candidates = torch.rand(7, 5, model.action_dim) * 2 - 1
    costs = cost_fn(candidates)
    assert costs.shape == (7,)
    z = model.encode(torch.as_tensor(obs["pixels"])[None, None])
    goal = model.encode(torch.as_tensor(reacher_env.goal_obs()["pixels"])[None, None])[0, 0]
    expected = (model.rollout(z, candidates[2:3]) - goal).pow(2).mean(dim=(-2, -1)).mean()
    assert float(costs[2]) == pytest.approx(float(expected), rel=1e-5)


def test_oracle_cost_matches_stepping_the_env(reacher_env):
    reacher_env.reset(seed=3)
    start = reacher_env.get_state()
    actions = torch.rand(4, 5, 2) * 2 - 1
    cost = SimulatorCost().make_cost(reacher_env, [], [])(actions)
    for i in range(4):
        reacher_env.set_state(start)
        for action in actions[i].numpy():
            reacher_env.step(action)
        assert cost[i] == pytest.approx(reacher_env.distance_to_goal(), abs=1e-6)


class RecordingPlanner:
    """Returns a fixed plan and remembers the warm starts it was given."""

    horizon = 4
    generator = torch.Generator()

    def __init__(self):
        self.inits = []

    def plan(self, cost_fn, init=None):
        self.inits.append(None if init is None else init.clone())
        step = len(self.inits)
        return PlanResult(actions=torch.full((4, 2), 0.1 * step), cost=0.0, info={})


class NoCost:
    def make_cost(self, env, observations, actions):
        return lambda candidates: torch.zeros(len(candidates))


def test_mpc_replans_every_k_steps_with_a_shifted_warm_start(reacher_env):
    planner = RecordingPlanner()
    controller = MPCController(planner, NoCost(), replan_every=2)
    obs = reacher_env.reset(seed=0)
    for _ in range(5):
        obs, *_ = reacher_env.step(controller.act(reacher_env, obs))
    assert len(planner.inits) == 3  # steps 1, 3, 5
    assert planner.inits[0] is None
    shifted = planner.inits[1]
    assert torch.allclose(shifted[:2], torch.full((2, 2), 0.1)) and torch.equal(shifted[2:], torch.zeros(2, 2))


def test_frameskip_model_actions_become_consecutive_env_actions():
    env_actions = to_env_actions(np.array([-1.0, 1.0, 0.0, 0.5]), np.array([-2.0, 0.0]), np.array([2.0, 1.0]), 2)
    assert np.allclose(env_actions, [[-2.0, 1.0], [0.0, 0.75]])


def test_random_baseline_rarely_reaches_reacher_goals(reacher_env):
    records = evaluate(reacher_env, {"random": RandomController()}, episodes=20, seed=0, progress=False)["random"]
    assert np.mean([r.success for r in records]) <= 0.25


def test_same_seed_gives_the_same_episode(reacher_env):
    first = run_episode(reacher_env, RandomController(), seed=5)
    second = run_episode(reacher_env, RandomController(), seed=5)
    assert first.distances == second.distances


@pytest.mark.slow
def test_oracle_mpc_reaches_most_reacher_goals(reacher_env):
    planner = CEM(5, [-1.0, -1.0], [1.0, 1.0], samples=200, elites=20, iterations=6, seed=0)
    controller = MPCController(planner, SimulatorCost())
    records = evaluate(reacher_env, {"oracle": controller}, episodes=10, seed=0, progress=False)["oracle"]
    assert np.mean([r.success for r in records]) >= 0.8


def test_plan_report_has_the_documented_schema(tmp_path):
    model = tiny_pixel_model()
    checkpoint = save_model_checkpoint(model, tmp_path / "model.ckpt")
    cfg = compose("plan", [f"checkpoint={checkpoint}", "episodes=2", "baselines=true", f"out={tmp_path / 'plan'}",
                           "planner.samples=20", "planner.elites=4", "planner.iterations=2", "videos=1",
                           "progress=false", "env.episode_length=5"])
    result = run_plan(cfg)
    report = json.loads((tmp_path / "plan" / "report.json").read_text())
    assert [row["method"] for row in report["results"]] == ["ours", "random", "oracle"]
    for row in report["results"]:
        assert set(row) == {"env", "method", "planner", "success_rate", "ci95", "final_distance", "ms_per_step",
                            "episodes", "seed"}
        assert row["episodes"] == 2 and row["env"] == "reacher-easy" and len(row["ci95"]) == 2
    assert report["config"]["episodes"] == 2
    assert (tmp_path / "plan" / "plot.png").stat().st_size > 0
    assert (tmp_path / "plan" / "episodes.gif").stat().st_size > 0
    assert "ours" in result["table"] and "oracle" in result["table"]


def test_checkpoint_for_another_observation_space_fails_clearly(tmp_path):
    checkpoint = save_model_checkpoint(tiny_pixel_model(image_size=32), tmp_path / "small.ckpt")
    cfg = compose("plan", [f"checkpoint={checkpoint}", "episodes=1", f"out={tmp_path}", "progress=false"])
    with pytest.raises(CheckpointError, match=r"trained on pixels observations of shape \(32, 32, 3\)"):
        run_plan(cfg)


def test_unknown_planner_name_fails_with_the_nearest_choice():
    with pytest.raises(ConfigError, match="unknown planner 'cme'; did you mean 'cem'"):
        compose("plan", ["planner=cme"])


def test_training_with_eval_callback_logs_goal_reaching_success(tmp_path, reacher_pixel_dataset):
    import csv

    from planning.pipeline import train_from_config

    cfg = compose("train", [
        f"data.path={reacher_pixel_dataset}", f"out={tmp_path / 'run'}", "trainer.max_steps=2",
        "trainer.val_check_interval=2", "trainer.limit_val_batches=1", "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=1", "data.batch_size=4", "data.num_workers=0", "wandb.mode=disabled",
        "eval.every_n_steps=2", "eval.episodes=1", "eval.video=false",
    ])
    run = train_from_config(cfg)
    rows = list(csv.DictReader(open(run / "csv" / "metrics.csv")))
    logged = [float(row["eval/success_rate"]) for row in rows if row.get("eval/success_rate")]
    assert logged and all(rate in (0.0, 1.0) for rate in logged)


def test_gradient_planner_runs_ours_and_the_oracle_falls_back_to_cem(tmp_path):
    checkpoint = save_model_checkpoint(tiny_pixel_model(), tmp_path / "model.ckpt")
    cfg = compose("plan", [f"checkpoint={checkpoint}", "planner=gradient", "planner.iterations=2", "episodes=1",
                           "baselines=true", "videos=0", "progress=false", "env.episode_length=5", f"out={tmp_path}"])
    rows = run_plan(cfg)["rows"]
    assert {row["method"]: row["planner"] for row in rows} == {"ours": "gradient", "random": None, "oracle": "cem"}
