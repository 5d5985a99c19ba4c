"""What changes between episodes: each variation factor changes what it says and nothing else, per episode seed."""

import numpy as np
import pytest
import torch

from jepa_wm.data.envs import make_env
from jepa_wm.data.envs.variation import FACTORS, PHYSICAL_FACTORS, VISUAL_FACTORS
from jepa_wm.errors import ConfigError
from jepa_wm.planning.costs import SimulatorCost
from tests.test_evaluation import env_config

FRAMESKIP = 5


def rollout(env, seed, steps=8):
    """Observation at reset and the joint positions after ``steps`` fixed actions."""
    obs, info = env.reset(seed=seed)
    for step in range(steps):
        env.step(np.full(env.action_dim, 0.8 if step % 2 else -0.5))
    return obs["pixels"], env.physics.data.qpos.copy(), info


def varied(task, **strengths):
    return make_env(env_config(task, variation={**{name: 0.0 for name in FACTORS}, **strengths}))


def test_strength_zero_is_the_nominal_task():
    pixels, qpos, info = rollout(make_env(env_config("cheetah-run")), seed=3)
    same_pixels, same_qpos, same_info = rollout(varied("cheetah-run"), seed=3)
    assert np.array_equal(pixels, same_pixels) and np.array_equal(qpos, same_qpos)
    assert info["variation"] == same_info["variation"] == {}


@pytest.mark.parametrize("factor", FACTORS)
def test_a_visual_factor_changes_the_picture_alone_and_a_physical_one_the_dynamics(factor):
    task = "cheetah-run"  # contacts, a tracking camera, several bodies and actuators: every factor has something to move
    nominal_pixels, nominal_qpos, _ = rollout(make_env(env_config(task)), seed=3)
    env = varied(task, **{factor: 1.0})
    pixels, qpos, info = rollout(env, seed=3)
    assert set(info["variation"]) == {factor}
    if factor in VISUAL_FACTORS:
        assert np.abs(pixels.astype(int) - nominal_pixels).mean() > 1.0, factor
        assert np.allclose(qpos, nominal_qpos), factor
    else:
        assert not np.allclose(qpos, nominal_qpos, atol=1e-4), factor
    again_pixels, again_qpos, again_info = rollout(env, seed=3)  # the same episode again: the same scene
    assert np.array_equal(again_pixels, pixels) and np.array_equal(again_qpos, qpos) and again_info == info
    if factor != "distractors":  # (its record is how many: strength x 4, on every episode)
        _, _, other = rollout(env, seed=4)
        assert other["variation"] != info["variation"]  # another episode, another draw


def test_every_reset_starts_from_the_nominal_model_and_draws_within_the_documented_range():
    env = varied("cheetah-run", mass=0.5, friction=1.0, actuator_gain=1.0)
    model = env.physics.model
    nominal = {name: np.array(getattr(model, name), copy=True) for name in ("body_mass", "geom_friction", "actuator_gear")}
    for seed in range(6):
        env.reset(seed=seed)
        mass_scale = model.body_mass[1:] / nominal["body_mass"][1:]
        assert np.all(np.abs(mass_scale - 1) <= 0.25 + 1e-9)  # strength 0.5 of x 1 +- 0.5
        friction_scale = model.geom_friction[:, 0] / nominal["geom_friction"][:, 0]
        assert np.allclose(friction_scale, friction_scale[0]) and 0.5 <= friction_scale[0] <= 2.0
        gear_scale = model.actuator_gear[:, 0] / nominal["actuator_gear"][:, 0]
        assert np.all(np.abs(gear_scale - 1) <= 0.3 + 1e-9)
    first = rollout(env, seed=0)
    rollout(env, seed=5)
    assert np.array_equal(rollout(env, seed=0)[1], first[1])  # not compounded over episodes


def test_the_oracle_plans_with_the_varied_physics():
    env = varied("cheetah-run", mass=1.0, actuator_gain=1.0)
    env.reset(seed=2)
    start = env.get_state()
    candidates = torch.rand(3, 2, env.action_dim * FRAMESKIP) * 2 - 1
    cost = SimulatorCost(FRAMESKIP, "final").make_cost(env, [], [])(candidates)
    for index in range(3):
        env.set_state(start)
        for action in candidates[index].numpy():
            for env_action in action.reshape(FRAMESKIP, env.action_dim):
                env.step(env_action)
        assert float(cost[index]) == pytest.approx(env.distance_to_goal(), abs=1e-5)


@pytest.mark.parametrize("variation, message", [({"mass": 1.5}, "variation.mass must be a strength in"),
                                                ({"weight": 0.5}, "unknown variation factor"),
                                                ({"light": "bright"}, "variation.light must be a strength")])
def test_a_bad_variation_is_one_config_error(variation, message):
    with pytest.raises(ConfigError, match=message):
        make_env(env_config("reacher-easy", variation=variation))


def test_physical_factors_are_named_as_such():
    assert set(VISUAL_FACTORS) | set(PHYSICAL_FACTORS) == set(FACTORS)
    assert not set(VISUAL_FACTORS) & set(PHYSICAL_FACTORS)


def test_a_plan_report_records_what_each_episode_drew(tmp_path):
    from jepa_wm.config import compose
    from jepa_wm.planning.experiment import run_plan

    result = run_plan(compose("plan", ["env=point_mass-easy", "baselines=true", "methods=[random]", "episodes=3",
                                       "env.variation.light=1.0", "env.variation.mass=0.5", "env.episode_length=3",
                                       f"out={tmp_path}", "videos=0", "progress=false"]))
    (row,) = result["rows"]
    assert len(row["variation"]) == 3 and all(set(drawn) == {"light", "mass"} for drawn in row["variation"])
    assert row["variation"][0] != row["variation"][1]
    env = make_env(env_config("point_mass-easy", variation={"light": 1.0, "mass": 0.5}))
    from jepa_wm.seeds import evaluation_seed

    assert env.reset(seed=evaluation_seed(0, 2, "dev"))[1]["variation"] == row["variation"][2]  # reproducible


def test_a_dataset_collected_before_the_variation_key_resumes_and_one_collected_with_variation_says_so(tmp_path):
    from jepa_wm.data.collect import collect
    from jepa_wm.data.storage import load_manifest

    before = {key: value for key, value in env_config("point_mass-easy").items() if key != "variation"}
    policy = {"name": "random"}
    collect(before, tmp_path / "data", episodes=2, steps_per_episode=3, policy=policy, episodes_per_shard=1,
            progress=False)
    nominal = env_config("point_mass-easy")  # every strength 0: the same task
    collect(nominal, tmp_path / "data", episodes=2, steps_per_episode=3, policy=policy, episodes_per_shard=1,
            progress=False)
    assert "variation" not in load_manifest(tmp_path / "data")["env"]
    with_variation = env_config("point_mass-easy", variation={**nominal["variation"], "mass": 0.5})
    collect(with_variation, tmp_path / "varied", episodes=2, steps_per_episode=3, policy=policy, episodes_per_shard=1,
            progress=False)
    assert load_manifest(tmp_path / "varied")["env"]["variation"]["mass"] == 0.5
    from jepa_wm.data.storage import DatasetError

    with pytest.raises(DatasetError, match="already holds a different dataset"):
        collect(with_variation, tmp_path / "data", episodes=2, steps_per_episode=3, policy=policy,
                episodes_per_shard=1, progress=False)
