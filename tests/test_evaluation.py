"""Latent costs, the simulator oracle, MPC and the goal-reaching evaluation."""

import json

import numpy as np
import pytest
import torch
from jepa_wm.data.actions import model_to_env_actions, to_env_range, to_model_range
from jepa_wm.data.envs import make_env
from jepa_wm.planning.costs import LatentGoalCost, SimulatorCost, latent_distance
from jepa_wm.planning.evaluate import evaluate, run_episode, wilson_interval
from jepa_wm.planning.experiment import build_controllers, run_plan
from jepa_wm.planning.mpc import MPCController, RandomController
from jepa_wm.planning.planners import CEM, PlanResult

from jepa_wm import CheckpointError, JEPAWorldModel
from jepa_wm.config import ConfigError, compose, load_group, model_config, to_dict
from jepa_wm.files import file_sha256
from jepa_wm.seeds import evaluation_seed

FRAMESKIP = 5  # the default model's


def env_config(name="reacher-easy", **changes):
    return {**to_dict(load_group("env", name)), **changes}


def save_model_checkpoint(model, path):
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return path


def tiny_pixel_model(image_size=64, task="reacher-easy", *overrides):
    cfg = model_config("model.encoder.channels=[8,16,16,16]", "model.encoder.embed_dim=8",
                       "model.predictor.hidden_dim=32", *overrides)
    env_info = {"config": env_config(task, image_size=image_size)}
    return JEPAWorldModel(cfg, (image_size, image_size, 3), 2 * cfg.frameskip, env=env_info).eval()


def test_wilson_interval_contains_the_rate_and_stays_in_bounds():
    assert wilson_interval(0, 20)[0] == 0.0 and 0.0 < wilson_interval(0, 20)[1] < 0.2
    low, high = wilson_interval(10, 20)
    assert low < 0.5 < high and high - low == pytest.approx(0.40, abs=0.02)
    assert wilson_interval(20, 20)[1] == 1.0
    for trials in range(1, 61):  # rounding never puts a bound past the rate (6 of 6 did: a plot's error bar refused it)
        for successes in range(trials + 1):
            low, high = wilson_interval(successes, trials)
            assert 0.0 <= low <= successes / trials <= high <= 1.0, (successes, trials)


def test_latent_distance_l2_and_cosine():
    goal = torch.ones(1, 4)
    predicted = torch.stack([torch.ones(1, 4), -torch.ones(1, 4)])[None]  # (1, 2, 1, 4)
    assert torch.allclose(latent_distance(predicted, goal, "l2"), torch.tensor([[0.0, 4.0]]))
    assert torch.allclose(latent_distance(predicted, goal, "cosine"), torch.tensor([[0.0, 2.0]]))


@pytest.mark.parametrize("steps", ["all", "final"])
def test_latent_cost_scores_every_candidate_from_the_current_observation(reacher_env, steps):
    model = tiny_pixel_model()
    obs, _ = reacher_env.reset(seed=0)
    cost_fn = LatentGoalCost(model, "l2", steps).make_cost(reacher_env, [obs], [])
    candidates = torch.rand(7, 5, model.action_dim) * 2 - 1
    with torch.no_grad():
        costs = cost_fn(candidates)
        z = model.encode(torch.as_tensor(obs["pixels"])[None, None])
        goal = model.encode(torch.as_tensor(reacher_env.goal_obs()["pixels"])[None, None])[0, 0]
        per_step = (model.rollout(z, candidates[2:3]) - goal).pow(2).mean(dim=(-2, -1))[0]  # (K,)
    expected = per_step.mean() if steps == "all" else per_step[-1]
    assert costs.shape == (7,) and float(costs[2]) == pytest.approx(float(expected), rel=1e-5)


def test_latent_cost_of_a_history_model_sees_the_last_frames_and_the_actions_between_them(reacher_env):
    model = tiny_pixel_model(64, "reacher-easy", "model.predictor.name=transformer", "model.history=3")
    with torch.no_grad():  # AdaLN-zero starts action-blind; random weights make every input matter
        for parameter in model.predictor.parameters():
            parameter.normal_(0, 0.2)
    observations = [reacher_env.reset(seed=1)[0]]
    taken = []
    for _ in range(4):
        action = np.random.default_rng(len(taken)).uniform(-1, 1, model.action_dim).astype(np.float32)
        taken.append(action)
        for env_action in model_to_env_actions(action, reacher_env.action_low, reacher_env.action_high, model.frameskip):
            obs, *_ = reacher_env.step(env_action)
        observations.append(obs)
    cost_fn = LatentGoalCost(model, "l2", "all").make_cost(reacher_env, observations, taken)
    candidates = torch.rand(3, 5, model.action_dim) * 2 - 1
    with torch.no_grad():
        frames = np.stack([o["pixels"] for o in observations[-3:]])
        z = model.encode(torch.as_tensor(frames)[None])  # (1, 3, N, D)
        past = torch.as_tensor(np.stack(taken[-2:]))[None]  # the 2 actions between the 3 frames
        goal = model.encode(torch.as_tensor(reacher_env.goal_obs()["pixels"])[None, None])[0, 0]
        expected = (model.rollout(z, candidates[:1], past) - goal).pow(2).mean(dim=(-2, -1)).mean()
        assert float(cost_fn(candidates)[0]) == pytest.approx(float(expected), rel=1e-5)
        wrong_past = (model.rollout(z, candidates[:1], torch.zeros_like(past)) - goal).pow(2).mean(dim=(-2, -1)).mean()
    assert float(expected) != pytest.approx(float(wrong_past), rel=1e-4)  # the past actions do matter


def test_goal_is_embedded_in_the_space_the_predictor_predicts_into(reacher_env):
    model = tiny_pixel_model(64, "reacher-easy", "model.target=ema")
    with torch.no_grad():
        for parameter in model.target_encoder.parameters():
            parameter.add_(0.5)  # the EMA target now differs from the online encoder
    reacher_env.reset(seed=0)  # the module's env: this test must not depend on another having reset it
    goal_obs = reacher_env.goal_obs()
    goal = LatentGoalCost(model, "l2", "all").goal_embedding(goal_obs)
    pixels = torch.as_tensor(goal_obs["pixels"])[None, None]
    with torch.no_grad():
        assert torch.allclose(goal, model.target_encoder(pixels[0])[0])
        assert not torch.allclose(goal, model.encode(pixels)[0, 0])


def step_model_actions(env, model_actions, frameskip):
    """Execute model actions (K, fs*A) in [-1, 1]; the distance after each model step."""
    distances = []
    for action in model_actions:
        for env_action in model_to_env_actions(action, env.action_low, env.action_high, frameskip):
            env.step(env_action)
        distances.append(env.distance_to_goal())
    return np.array(distances)


@pytest.mark.parametrize("env_name", ["reacher-easy", "reacher-offset25", "point_mass-easy"])
def test_oracle_cost_is_the_true_distance_after_each_model_step_weighed_as_ours(env_name):
    env = make_env(env_config(env_name, terminate_on_success=False))
    env.reset(seed=3)
    start = env.get_state()
    candidates = torch.rand(3, 4, 2 * FRAMESKIP) * 2 - 1
    cost_all = SimulatorCost(FRAMESKIP, "all").make_cost(env, [], [])(candidates)
    cost_final = SimulatorCost(FRAMESKIP, "final").make_cost(env, [], [])(candidates)
    for i in range(3):
        env.set_state(start)
        distances = step_model_actions(env, candidates[i].numpy(), FRAMESKIP)
        assert float(cost_all[i]) == pytest.approx(distances.mean(), abs=1e-5)
        assert float(cost_final[i]) == pytest.approx(distances[-1], abs=1e-5)


def test_oracle_cost_on_joints_is_the_largest_joint_error():
    env = make_env(env_config("reacher-offset25"))
    env.reset(seed=0)
    assert env.success.name == "qpos"
    cost = SimulatorCost(FRAMESKIP, "final").make_cost(env, [], [])(torch.zeros(1, 1, 2 * FRAMESKIP))
    start = env.get_state()
    step_model_actions(env, np.zeros((1, 2 * FRAMESKIP)), FRAMESKIP)
    qpos_error = np.abs(env.physics.data.qpos - env._goal_state[:2])
    assert float(cost[0]) == pytest.approx(qpos_error.max(), abs=1e-5)
    env.set_state(start)


def test_whole_pose_oracle_measures_every_joint_where_the_success_oracle_measures_the_fingertip():
    """reacher-easy succeeds on the fingertip's x-y; the whole-pose oracle compares both joint angles (wrapped)."""
    env = make_env(env_config("reacher-easy", terminate_on_success=False))
    env.reset(seed=5)
    start = env.get_state()
    candidates = torch.rand(4, 3, 2 * FRAMESKIP) * 2 - 1
    whole = SimulatorCost(FRAMESKIP, "final", pose="whole").make_cost(env, [], [])(candidates)
    success = SimulatorCost(FRAMESKIP, "final").make_cost(env, [], [])(candidates)
    for i in range(len(candidates)):
        env.set_state(start)
        fingertip_distance = step_model_actions(env, candidates[i].numpy(), FRAMESKIP)[-1]
        difference = env.physics.data.qpos - env.goal_pose
        wrapped = (difference + np.pi) % (2 * np.pi) - np.pi  # both reacher joints are hinges
        assert float(whole[i]) == pytest.approx(np.linalg.norm(wrapped), abs=1e-5)
        assert float(success[i]) == pytest.approx(fingertip_distance, abs=1e-5)
    assert not torch.allclose(whole, success)
    with pytest.raises(ValueError, match="oracle_cost"):
        SimulatorCost(FRAMESKIP, "final", pose="picture")


class RecordingPlanner:
    """Returns a fixed plan and remembers the warm starts it was given."""

    horizon = 4
    generator = torch.Generator()
    action_middle = torch.tensor([0.25, -0.5])

    def __init__(self):
        self.inits = []

    def plan(self, cost_fn, init=None):
        self.inits.append(None if init is None else init.clone())
        step = len(self.inits)
        return PlanResult(actions=torch.full((4, 2), 0.1 * step), cost=0.0, info={})


class NoCost:
    def make_cost(self, env, observations, actions):
        return lambda candidates: torch.zeros(len(candidates))


def test_mpc_replans_every_k_steps_with_a_warm_start_shifted_and_padded_with_the_middle(reacher_env):
    planner = RecordingPlanner()
    controller = MPCController(planner, NoCost(), replan_every=2)
    obs, _ = reacher_env.reset(seed=0)
    for _ in range(5):
        obs, *_ = reacher_env.step(controller.act(reacher_env, obs))
    assert len(planner.inits) == 3  # steps 1, 3, 5
    assert planner.inits[0] is None
    shifted = planner.inits[1]
    assert torch.allclose(shifted[:2], torch.full((2, 2), 0.1))
    assert torch.equal(shifted[2:], planner.action_middle.expand(2, 2))


def test_frameskip_model_actions_become_consecutive_env_actions():
    env_actions = model_to_env_actions(np.array([-1.0, 1.0, 0.0, 0.5]), np.array([-2.0, 0.0]), np.array([2.0, 1.0]), 2)
    assert np.allclose(env_actions, [[-2.0, 1.0], [0.0, 0.75]])
    box = np.array([[-2.0, 0.0], [2.0, 1.0], [0.5, 0.25]])
    assert np.allclose(to_env_range(to_model_range(box, [-2.0, 0.0], [2.0, 1.0]), [-2.0, 0.0], [2.0, 1.0]), box)


def test_mpc_executes_each_planned_model_action_as_frameskip_env_actions(reacher_env):
    class OnePlan(RecordingPlanner):
        horizon = 2

        def plan(self, cost_fn, init=None):
            return PlanResult(actions=torch.linspace(-1, 1, 2 * 2 * FRAMESKIP).view(2, 2 * FRAMESKIP), cost=0.0)

    controller = MPCController(OnePlan(), NoCost(), replan_every=2, frameskip=FRAMESKIP)
    obs, _ = reacher_env.reset(seed=0)
    executed = [controller.act(reacher_env, obs) for _ in range(2 * FRAMESKIP)]
    plan = torch.linspace(-1, 1, 2 * 2 * FRAMESKIP).view(2, 2 * FRAMESKIP).numpy()
    expected = model_to_env_actions(plan, reacher_env.action_low, reacher_env.action_high, FRAMESKIP).reshape(-1, 2)
    assert np.allclose(executed, expected)


def test_random_baseline_rarely_reaches_reacher_goals(reacher_env):
    records = evaluate(reacher_env, {"random": RandomController()}, episodes=20, seed=0, progress=False)["random"]
    assert np.mean([r.success for r in records]) <= 0.25


def test_same_seed_gives_the_same_episode(reacher_env):
    first = run_episode(reacher_env, RandomController(), seed=5)
    second = run_episode(reacher_env, RandomController(), seed=5)
    assert first.distances == second.distances


def test_dev_and_test_episodes_never_coincide():
    dev = {evaluation_seed(0, episode, "dev") for episode in range(200)}
    test = {evaluation_seed(0, episode, "test") for episode in range(200)}
    assert len(dev) == len(test) == 200 and not dev & test
    with pytest.raises(ValueError, match="unknown split 'val'"):
        evaluation_seed(0, 0, "val")


def test_without_terminate_on_success_the_episode_runs_its_whole_budget():
    env = make_env(env_config(terminate_on_success=False, episode_length=6))
    env.reset(seed=4)

    class GoToGoalThenLeave:
        """Jumps onto the goal at the first step (through the state), then pushes away from it."""

        planning_seconds = []

        def reset(self, seed=None):
            self.steps = 0

        def act(self, env, obs):
            self.steps += 1
            if self.steps == 1:
                env.set_state(env._goal_state)
                return np.zeros(2)
            return np.ones(2)

    record = run_episode(env, GoToGoalThenLeave(), seed=4)
    assert record.steps == 6 and record.success and not record.success_at_end


def test_oracle_reaches_most_reacher_goals_at_the_default_frameskip(reacher_env):
    planner = CEM(5, -1.0, [1.0] * 2 * FRAMESKIP, samples=100, elites=10, iterations=4, seed=0)
    controller = MPCController(planner, SimulatorCost(FRAMESKIP, "all"), frameskip=FRAMESKIP)
    records = evaluate(reacher_env, {"oracle": controller}, episodes=6, seed=0, progress=False)["oracle"]
    assert np.mean([r.success for r in records]) >= 0.8


def plan_overrides(checkpoint, tmp_path, *extra):
    return [f"checkpoint={checkpoint}", "episodes=2", f"out={tmp_path / 'plan'}", "planner.samples=20",
            "planner.elites=4", "planner.iterations=2", "videos=0", "progress=false", "env.episode_length=5", *extra]


def test_plan_report_has_the_documented_schema(tmp_path):
    checkpoint = save_model_checkpoint(tiny_pixel_model(), tmp_path / "model.ckpt")
    result = run_plan(compose("plan", plan_overrides(checkpoint, tmp_path, "baselines=true", "videos=1", "split=test")))
    report = json.loads((tmp_path / "plan" / "report.json").read_text())
    assert [row["method"] for row in report["results"]] == ["ours", "random", "oracle"]
    for row in report["results"]:
        assert set(row) == {"env", "method", "planner", "success_rate", "ci95", "success_at_end_rate", "ci95_at_end",
                            "final_distance", "ms_per_step", "episodes", "reached", "solved_at_start", "seed",
                            "split", "failures"}  # reacher-easy's position criterion names no joints off
        assert row["episodes"] == 2 and row["env"] == "reacher-easy" and row["split"] == "test"
        per_episode = [int(record.success) for record in result["records"][row["method"]]]
        assert row["reached"] == per_episode and row["success_rate"] == sum(per_episode) / 2
    assert report["config"]["episodes"] == 2 and report["config"]["env"]["episode_length"] == 5
    assert (tmp_path / "plan" / "plot.png").stat().st_size > 0
    assert (tmp_path / "plan" / "episodes.gif").stat().st_size > 0
    assert "ours" in result["table"] and "oracle" in result["table"]


def test_plan_uses_the_checkpoints_own_task_and_refuses_another(tmp_path):
    checkpoint = save_model_checkpoint(tiny_pixel_model(task="point_mass-easy"), tmp_path / "point_mass.ckpt")
    rows = run_plan(compose("plan", plan_overrides(checkpoint, tmp_path)))["rows"]
    assert rows[0]["env"] == "point_mass-easy"
    with pytest.raises(ConfigError, match=r"trained on point_mass-easy, and env reacher-easy differs in domain"):
        run_plan(compose("plan", plan_overrides(checkpoint, tmp_path, "env=reacher-easy")))
    with pytest.raises(ConfigError, match=r"differs in action_repeat: 4 vs 2"):
        run_plan(compose("plan", plan_overrides(checkpoint, tmp_path, "env.action_repeat=2")))


def test_plan_accepts_another_task_with_the_same_dynamics_and_evaluation_overrides(tmp_path):
    checkpoint = save_model_checkpoint(tiny_pixel_model(), tmp_path / "reacher.ckpt")
    for task, threshold in (("reacher-hard", 0.015), ("reacher-offset25", 0.05)):
        result = run_plan(compose("plan", plan_overrides(checkpoint, tmp_path, f"env={task}")))
        assert result["rows"][0]["env"] == task
        assert json.loads((tmp_path / "plan" / "report.json").read_text())["config"]["env"]["success_threshold"] in (
            threshold, None)
    with pytest.raises(ConfigError, match="the checkpoint's model reads pixels observations"):
        run_plan(compose("plan", plan_overrides(checkpoint, tmp_path, "env.obs_type=state")))


def test_checkpoint_for_another_observation_space_fails_clearly(tmp_path):
    checkpoint = save_model_checkpoint(tiny_pixel_model(image_size=32), tmp_path / "small.ckpt")
    with pytest.raises(ConfigError, match=r"differs in image_size: 32 vs 64"):
        run_plan(compose("plan", plan_overrides(checkpoint, tmp_path, "env.image_size=64")))
    inconsistent = tiny_pixel_model(image_size=32)
    inconsistent.hparams["env"]["config"]["image_size"] = 64  # a checkpoint whose record disagrees with its model
    checkpoint = save_model_checkpoint(inconsistent, tmp_path / "inconsistent.ckpt")
    with pytest.raises(CheckpointError, match=r"trained on pixels observations of shape \(32, 32, 3\)"):
        run_plan(compose("plan", plan_overrides(checkpoint, tmp_path)))


def test_unknown_planner_name_fails_with_the_nearest_choice():
    with pytest.raises(ConfigError, match="unknown planner 'cme'; did you mean 'cem'"):
        compose("plan", ["planner=cme"])


def test_every_caller_plans_with_the_cost_of_plan_yaml(reacher_env):
    from jepa_wm.planning.callbacks import GoalReachingEvalCallback

    model = tiny_pixel_model()
    plan = compose("plan")
    controllers, _ = build_controllers(plan, ["ours", "oracle"], model, reacher_env, "cpu")
    callback = GoalReachingEvalCallback(every_n_steps=1, episodes=1, video=False)
    from_callback, _ = build_controllers(callback.plan_cfg, ["ours"], model, reacher_env, "cpu")
    for controller in (controllers["ours"], from_callback["ours"]):
        assert controller.cost_model.steps == plan.cost.steps
        assert controller.cost_model.objective.describe() == f"latent {plan.cost.distance}"  # no learned cost here
    assert controllers["oracle"].cost_model.steps == plan.cost.steps
    assert controllers["oracle"].frameskip == model.frameskip


def test_training_logs_the_success_of_planning_the_dev_episodes_with_the_current_model(tmp_path, reacher_pixel_dataset):
    """What the callback logs is what plan.py measures for the same model, planner and dev episodes."""
    import csv

    from jepa_wm.planning.experiment import run_plan

    from jepa_wm.pipeline import train_from_config

    plan = ["planner.samples=20", "planner.elites=4", "planner.iterations=2", "env.episode_length=8",
            "env.success_threshold=0.1"]
    cfg = compose("train", [
        f"data.path={reacher_pixel_dataset}", f"out={tmp_path / 'run'}", "trainer.max_steps=4",
        "trainer.val_check_interval=2", "trainer.limit_val_batches=1", "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=1", "data.batch_size=4", "data.num_workers=0", "wandb.mode=disabled",
        "eval.every_n_steps=2", "eval.episodes=4", "eval.video=false", "model.frameskip=2",
        f"eval.plan=[{','.join(plan)}]", "learned_cost=none",
    ])
    run = train_from_config(cfg)
    rows = list(csv.DictReader(open(run / "csv" / "metrics.csv")))
    logged = [(float(row["eval/success_rate"]), float(row["eval/final_distance"])) for row in rows
              if row.get("eval/success_rate")]
    measured = run_plan(compose("plan", [f"checkpoint={run / 'checkpoints' / 'last.ckpt'}", "episodes=4", "split=dev",
                                         "videos=0", "progress=false", f"out={tmp_path / 'plan'}", *plan]))["rows"][0]
    assert len(logged) == 2  # once per evaluation (steps 2 and 4), not repeated on the training rows between
    assert logged[-1] == pytest.approx((measured["success_rate"], measured["final_distance"]), rel=1e-5)


def test_gradient_planner_runs_ours_and_the_oracle_falls_back_to_cem(tmp_path):
    checkpoint = save_model_checkpoint(tiny_pixel_model(), tmp_path / "model.ckpt")
    cfg = compose("plan", [f"checkpoint={checkpoint}", "planner=gradient", "planner.iterations=2", "episodes=1",
                           "baselines=true", "videos=0", "progress=false", "env.episode_length=5", f"out={tmp_path}"])
    rows = run_plan(cfg)["rows"]
    assert {row["method"]: row["planner"] for row in rows} == {"ours": "gradient", "random": None, "oracle": "cem"}


def test_a_finished_plan_report_is_found_only_for_the_same_settings_and_checkpoint(tmp_path):
    from jepa_wm.planning.experiment import finished_report, run_plan

    checkpoint = save_model_checkpoint(tiny_pixel_model(), tmp_path / "model.ckpt")
    settings = [f"checkpoint={checkpoint}", "episodes=1", "videos=0", "progress=false", "env.episode_length=4",
                "planner.samples=8", "planner.elites=2", "planner.iterations=1", f"out={tmp_path / 'plan'}"]
    assert finished_report(compose("plan", settings), tmp_path / "plan") is None
    result = run_plan(compose("plan", settings))
    reused = finished_report(compose("plan", settings), tmp_path / "plan")
    assert reused["rows"] == json.loads(json.dumps(result["rows"])) and reused["table"] == result["table"]
    assert reused["files"]["report"] == result["files"]["report"]
    assert finished_report(compose("plan", [*settings, "seed=1"]), tmp_path / "plan") is None
    # planned in the same task under other env settings: not the same report either (it was once taken as one)
    assert finished_report(compose("plan", [*settings, "env.episode_length=5"]), tmp_path / "plan") is None
    assert finished_report(compose("plan", [*settings, "env.planning_cost=sum"]), tmp_path / "plan") is None
    report = json.loads((tmp_path / "plan" / "report.json").read_text())
    del report["config"]["ensemble"], report["config"]["cost"]["disagreement"]  # written before those settings
    (tmp_path / "plan" / "report.json").write_text(json.dumps(report))
    assert finished_report(compose("plan", settings), tmp_path / "plan")["rows"] == reused["rows"]
    torch.manual_seed(1)
    save_model_checkpoint(tiny_pixel_model(), checkpoint)  # other weights in the same file
    assert finished_report(compose("plan", settings), tmp_path / "plan") is None


def test_gif_frames_are_large_enough_to_read_and_name_their_panes():
    from jepa_wm.planning.evaluate import READABLE_WIDTH, curve_label, labelled

    frame = np.full((64, 128, 3), 90, np.uint8)  # observation | goal, 64 px each
    short = labelled(frame, "ours | episode 0", reached=False)
    long = labelled(frame, "ours | episode 12 | step 40 | distance 0.123 | reached | and more words here", True)
    assert short.shape[1] >= READABLE_WIDTH and short.shape[1] % 128 == 0
    assert long.shape[0] > short.shape[0]  # a header that does not fit one line takes two
    width = short.shape[1]
    label_rows = short[18:30]  # the row of pane names, under the one-line header and its bar
    assert label_rows[:, : width // 2].max() > 150 and label_rows[:, width // 2:].max() > 150  # both panes named
    assert curve_label("ours", 20, 50) == "ours (every episode reached the goal by step 19)"
    assert curve_label("random", 50, 50) == "random"


def test_the_training_time_evaluation_plans_with_the_cost_and_planner_its_config_names(tmp_path, reacher_env,
                                                                                        monkeypatch):
    import jepa_wm.pipeline
    from jepa_wm.planning.callbacks import GoalReachingEvalCallback

    cfg = compose("train", ["data.path=unused", f"out={tmp_path}", "learned_cost=none", "eval.every_n_steps=3",
                            "eval.plan=[cost.distance=cosine,cost.steps=final,planner=mppi,planner.samples=24,planner.elites=6]"])
    monkeypatch.setattr(jepa_wm.pipeline, "datamodule_from_config", lambda cfg: None)
    given = {}
    monkeypatch.setattr(jepa_wm.pipeline, "fit", lambda cfg, datamodule, callbacks: given.update(callbacks=callbacks))
    jepa_wm.pipeline.train_from_config(cfg)
    (callback,) = given["callbacks"]
    assert isinstance(callback, GoalReachingEvalCallback) and callback.every_n_steps == 3
    controllers, _ = build_controllers(callback.plan_cfg, ["ours"], tiny_pixel_model(), reacher_env, "cpu")
    ours = controllers["ours"]
    assert ours.cost_model.objective.describe() == "latent cosine" and ours.cost_model.steps == "final"
    assert type(ours.planner).__name__ == "MPPI" and ours.planner.samples == 24


def test_a_goal_already_met_at_the_start_is_counted_in_the_report_and_the_goal_sources_that_reject_it_have_none():
    """Published pitfall: trajectory-offset pairs are not rejected, so a short offset leaves goals met before any
    action, which random then "reaches". The report counts them (``solved_at_start``) instead of hiding them."""
    from jepa_wm.planning.evaluate import summarize

    offset = to_dict(load_group("env", "reacher-offset25"))
    short = make_env({**offset, "obs_type": "state", "goal_steps": 1, "episode_length": 3})
    records = evaluate(short, {"random": RandomController()}, 8, seed=0, progress=False)["random"]
    met = []
    for episode in range(8):
        short.reset(seed=evaluation_seed(0, episode, "dev"))
        met.append(short.is_success())
    assert [record.solved_at_start for record in records] == met and any(met) and not all(met)
    assert summarize(records, short.name, "random", None, 0)["solved_at_start"] == sum(met)
    rejecting = make_env({**to_dict(load_group("env", "reacher-easy")), "obs_type": "state", "episode_length": 1})
    records = evaluate(rejecting, {"random": RandomController()}, 8, seed=0, progress=False)["random"]
    assert not any(record.solved_at_start for record in records)


def test_the_report_says_which_success_joints_the_failed_episodes_ended_beyond_their_tolerance():
    """finger-spin's failures: the report counts, per success joint by name, the failed episodes that ended off
    there; a success leaves nothing counted."""
    from jepa_wm.planning.evaluate import summarize

    env = make_env(env_config("finger-spin", episode_length=3))
    records = [run_episode(env, RandomController(), seed=seed) for seed in range(3)]
    assert not any(record.success for record in records)  # three random steps reach none of these goals
    for record in records:
        assert set(record.off_goal) <= {"proximal", "distal", "hinge"} and record.off_goal
    row = summarize(records, env.name, "random", None, 0)
    counted = {name: sum(name in record.off_goal for record in records) for name in ("proximal", "distal", "hinge")}
    assert row["failures"] == 3 and row["off_at_failure"] == {k: v for k, v in counted.items() if v}
    env.reset(seed=0)
    env.set_state(env._goal_state)
    assert env.coordinates_off_goal() == []
    reacher = make_env(env_config("reacher-easy"))
    reacher.reset(seed=0)
    assert reacher.coordinates_off_goal() == []  # a position criterion is one distance: it names no joint


def test_an_ensemble_cost_is_the_mean_of_its_models_costs_plus_their_spread(reacher_env):
    from jepa_wm.planning.costs import EnsembleGoalCost

    torch.manual_seed(0)
    members = [LatentGoalCost(tiny_pixel_model(), "l2", "all") for _ in range(3)]
    obs, _ = reacher_env.reset(seed=0)
    candidates = torch.rand(6, 5, members[0].model.action_dim) * 2 - 1
    with torch.no_grad():
        each = torch.stack([member.make_cost(reacher_env, [obs], [])(candidates) for member in members])  # (3, 6)
        mean = EnsembleGoalCost(members).make_cost(reacher_env, [obs], [])(candidates)
        pessimistic = EnsembleGoalCost(members, disagreement=2.0).make_cost(reacher_env, [obs], [])(candidates)
    assert not torch.allclose(each[0], each[1])  # the models differ, so the mean is not any one of them
    assert torch.allclose(mean, each.mean(dim=0)) and torch.allclose(pessimistic, mean + 2.0 * each.std(dim=0))
    assert "mean over 3 world models" in EnsembleGoalCost(members).description
    with pytest.raises(ValueError, match="at least 2 world models"):
        EnsembleGoalCost(members[:1])


def test_plan_with_an_ensemble_records_its_models_and_refuses_models_of_another_task_or_rate(tmp_path):
    checkpoint = save_model_checkpoint(tiny_pixel_model(), tmp_path / "model.ckpt")
    torch.manual_seed(1)
    other = save_model_checkpoint(tiny_pixel_model(), tmp_path / "other.ckpt")
    alone = run_plan(compose("plan", plan_overrides(checkpoint, tmp_path, "split=test")))
    twice = run_plan(compose("plan", plan_overrides(checkpoint, tmp_path / "twice", "split=test", f"ensemble=[{checkpoint}]")))
    # the mean of one model's cost taken twice is its cost: the same plans, episode for episode
    assert [r.final_distance for r in twice["records"]["ours"]] == [r.final_distance for r in alone["records"]["ours"]]
    result = run_plan(compose("plan", plan_overrides(checkpoint, tmp_path / "pair", "split=test", f"ensemble=[{other}]")))
    report = json.loads((tmp_path / "pair" / "plan" / "report.json").read_text())
    assert report["ensemble_sha256"] == [file_sha256(other)] and "mean over 2 world models" in result["cost"]
    elsewhere = save_model_checkpoint(tiny_pixel_model(task="point_mass-easy"), tmp_path / "point_mass.ckpt")
    with pytest.raises(ConfigError, match="ensemble member .*point_mass.ckpt was trained on another task"):
        run_plan(compose("plan", plan_overrides(checkpoint, tmp_path / "x", f"ensemble=[{elsewhere}]")))
    faster = save_model_checkpoint(tiny_pixel_model(64, "reacher-easy", "model.frameskip=3"), tmp_path / "f3.ckpt")
    with pytest.raises(ConfigError, match="acts every 3 env steps and the checkpoint every 5"):
        run_plan(compose("plan", plan_overrides(checkpoint, tmp_path / "x", f"ensemble=[{faster}]")))


def test_goals_are_split_by_the_success_joints_they_ask_to_move_and_success_is_counted_on_each_side():
    from jepa_wm.data.envs.tasks import wrap_angles
    from jepa_wm.planning.evaluate import goal_moves, success_by_goal_move

    env = make_env(env_config("finger-spin", obs_type="state"))
    moves = goal_moves(env, 6, seed=0, split="dev")
    for episode, names in enumerate(moves):
        env.reset(seed=evaluation_seed(0, episode, "dev"))
        start, goal = env.position(), env._goal_coordinates
        errors = np.abs(wrap_angles(start - goal, env.angle_periods))  # the spinner modulo half a turn
        assert names == [name for name, error in zip(env.coordinate_names, errors) if error > env.success_threshold]
    assert any("hinge" in names for names in moves) and any("hinge" not in names for names in moves)
    env.close()
    assert goal_moves(make_env(env_config("reacher-easy", obs_type="state")), 2, seed=0) == [[], []]  # a position
    split = success_by_goal_move([0, 1, 1, 1], [["hinge", "distal"], ["distal"], [], ["distal"]])
    assert split == {"hinge": {"moved": [0, 1], "kept": [3, 3]}, "distal": {"moved": [2, 3], "kept": [1, 1]}}
    assert "proximal" not in success_by_goal_move([1, 0], [["proximal"], ["proximal"]])  # every goal moves it: no split
    with pytest.raises(ValueError, match="4 episodes reached or not, but 3 goals"):
        success_by_goal_move([0, 1, 1, 1], [[], [], []])


def test_a_report_splits_success_by_what_each_goal_asks_to_move_and_prints_it():
    from jepa_wm.planning import RandomController
    from jepa_wm.planning.evaluate import evaluate, goal_moves, success_by_goal_move, summarize
    from jepa_wm.planning.experiment import report_table

    env = make_env(env_config("finger-spin", obs_type="state"))
    records = evaluate(env, {"random": RandomController()}, 6, seed=0, progress=False)["random"]
    row = summarize(records, "finger-spin", "random", None, 0)
    assert row["by_goal_move"] == success_by_goal_move(row["reached"], goal_moves(env, 6, seed=0, split="dev"))
    hinge = row["by_goal_move"]["hinge"]
    assert sum(hinge["moved"][1:]) + sum(hinge["kept"][1:]) == 6
    assert (f"random: hinge reached in {hinge['moved'][0]} of {hinge['moved'][1]} goals that move it, "
            f"{hinge['kept'][0]} of {hinge['kept'][1]} that keep it") in report_table([row], "rad", None)
    env.close()
    reacher = make_env(env_config("reacher-easy", obs_type="state"))
    records = evaluate(reacher, {"random": RandomController()}, 1, seed=0, progress=False)["random"]
    assert "by_goal_move" not in summarize(records, "reacher-easy", "random", None, 0)  # a position criterion
