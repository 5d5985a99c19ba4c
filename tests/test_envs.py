"""Goal-reaching DMC environments: seeding, observations, state, success criteria."""

import os
import subprocess
import sys

import numpy as np
import pytest

from data.envs import GoalReachingEnv


def reacher(**settings):
    return GoalReachingEnv("reacher", settings.pop("task", "easy"), **settings)


def test_same_seed_gives_same_start_goal_and_frames():
    first, second = reacher(), reacher()
    obs_a, obs_b = first.reset(seed=7), second.reset(seed=7)
    assert np.array_equal(obs_a["pixels"], obs_b["pixels"])
    assert np.array_equal(first.goal_obs()["pixels"], second.goal_obs()["pixels"])
    for action in np.random.default_rng(0).uniform(-1, 1, (5, 2)):
        assert np.array_equal(first.step(action)[0]["pixels"], second.step(action)[0]["pixels"])


def test_different_seeds_give_different_episodes():
    env = reacher()
    start = env.reset(seed=1)["pixels"]
    goal = env.goal_position
    assert not np.array_equal(start, env.reset(seed=2)["pixels"])
    assert not np.allclose(goal, env.goal_position)


def test_observation_types_and_sizes():
    env = reacher(obs_type="both", image_size=32, camera_id=1)
    obs = env.reset(seed=0)
    assert obs["pixels"].shape == (32, 32, 3) and obs["pixels"].dtype == np.uint8
    assert obs["state"].shape == (6,) and obs["state"].dtype == np.float32
    assert env.observation_spec() == {"pixels": ((32, 32, 3), "uint8"), "state": ((6,), "float32")}
    assert set(reacher(obs_type="state").reset(seed=0)) == {"state"}


def test_action_repeat_moves_further_per_step():
    distances = []
    for repeat in (1, 4):
        env = reacher(action_repeat=repeat)
        env.reset(seed=0)
        before = env.position()
        env.step(np.ones(2))
        distances.append(np.linalg.norm(env.position() - before))
    assert distances[1] > 2 * distances[0]


def test_set_state_reproduces_the_future_exactly():
    env = reacher(obs_type="both")
    env.reset(seed=3)
    env.step(np.array([0.5, -0.5]))
    saved = env.get_state()
    first = env.step(np.array([1.0, 1.0]))[0]
    env.step(np.array([-1.0, 0.3]))
    env.set_state(saved)
    again = env.step(np.array([1.0, 1.0]))[0]
    assert np.array_equal(first["pixels"], again["pixels"]) and np.array_equal(first["state"], again["state"])


@pytest.mark.parametrize("task,radius", [("easy", 0.05), ("hard", 0.015)])
def test_reacher_success_is_fingertip_within_target_radius_of_goal(task, radius):
    env = reacher(task=task)
    env.reset(seed=4)
    assert env.success_radius == pytest.approx(radius)
    assert not env.is_success()
    env.set_state(env._goal_state)  # the goal state itself is a success
    assert env.is_success() and env.distance_to_goal() == pytest.approx(0.0, abs=1e-9)


def test_point_mass_success_and_goal_marker_does_not_collide():
    env = GoalReachingEnv("point_mass", "easy", obs_type="state")
    env.reset(seed=0)
    assert env.success_radius == pytest.approx(0.03)
    assert env.physics.named.model.geom_contype["target"] == 0
    env.set_state(env._goal_state)
    assert env.is_success()


def test_goal_marker_shows_in_videos_but_not_in_observations():
    env = reacher()
    obs = env.reset(seed=0)["pixels"]
    assert np.array_equal(obs, env.render())
    assert not np.array_equal(env.render(show_goal_marker=True), env.render())


def test_generic_domain_uses_random_rollout_goals():
    env = GoalReachingEnv("cartpole", "swingup", obs_type="state", success_radius=0.2, position_indices=[0])
    env.reset(seed=0)
    assert env.position().shape == (1,)
    env.set_state(env._goal_state)
    assert env.is_success()


def test_generic_domain_without_success_radius_says_what_to_set():
    with pytest.raises(ValueError, match="set env.success_radius"):
        GoalReachingEnv("cartpole", "swingup")


def test_unknown_task_suggests_the_nearest():
    with pytest.raises(ValueError, match="did you mean 'reacher-easy'"):
        GoalReachingEnv("reacher", "esy")


def test_wrong_action_shape_is_rejected():
    env = reacher()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"expects actions of shape \(2,\)"):
        env.step(np.zeros(3))


def test_renders_without_a_display():
    code = "from data.envs import GoalReachingEnv; print(GoalReachingEnv('reacher', 'easy').reset(seed=0)['pixels'].shape)"
    env = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "MUJOCO_GL", "PYOPENGL_PLATFORM")}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "(64, 64, 3)" in result.stdout
