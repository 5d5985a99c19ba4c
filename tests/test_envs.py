"""Goal-reaching DMC environments: seeding, observations, state, success criteria."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from jepa_wm.data.envs import GoalReachingEnv

REACHER_FINGER_LENGTH = 0.12  # wrist joint to fingertip, in reacher.xml


def reacher(**settings):
    return GoalReachingEnv("reacher", settings.pop("task", "easy"), **settings)


def goal_state_moved(env, joint: int, offset: float) -> np.ndarray:
    """The goal's physics state (qpos, qvel) with one joint position moved by ``offset``."""
    state = env._goal_state.copy()
    state[joint] += offset
    return state


def test_same_seed_gives_same_start_goal_and_frames():
    first, second = reacher(), reacher()
    obs_a, obs_b = first.reset(seed=7)[0], second.reset(seed=7)[0]
    assert np.array_equal(obs_a["pixels"], obs_b["pixels"])
    assert np.array_equal(first.goal_obs()["pixels"], second.goal_obs()["pixels"])
    assert np.array_equal(first.goal_coordinates, second.goal_coordinates)
    for action in np.random.default_rng(0).uniform(-1, 1, (5, 2)):
        assert np.array_equal(first.step(action)[0]["pixels"], second.step(action)[0]["pixels"])


def test_reset_with_a_seed_forgets_earlier_episodes():
    env = reacher()
    first = env.reset(seed=7)[0]["pixels"]
    env.step(np.ones(2))
    env.reset(seed=3)
    assert np.array_equal(env.reset(seed=7)[0]["pixels"], first)


def test_different_seeds_give_different_starts_and_goals():
    env = reacher()
    start, goal = env.reset(seed=1)[0]["pixels"], env.goal_obs()["pixels"]
    goal_position = env.goal_coordinates
    assert not np.array_equal(start, env.reset(seed=2)[0]["pixels"])
    assert not np.array_equal(goal, env.goal_obs()["pixels"])
    assert not np.allclose(goal_position, env.goal_coordinates)


def test_default_pixels_are_64x64_rgb_uint8():
    obs, _ = reacher().reset(seed=0)
    assert set(obs) == {"pixels"}
    assert obs["pixels"].shape == (64, 64, 3) and obs["pixels"].dtype == np.uint8


def test_image_size_camera_and_observation_type_are_configurable():
    env = reacher(obs_type="both", image_size=32, camera_id=1)
    obs, _ = env.reset(seed=0)
    assert obs["pixels"].shape == (32, 32, 3) and obs["pixels"].dtype == np.uint8
    assert obs["state"].shape == (4,) and obs["state"].dtype == np.float32  # joint positions, velocities
    assert env.observation_spec() == {"pixels": ((32, 32, 3), "uint8"), "state": ((4,), "float32")}
    from_camera_0 = reacher(image_size=32, camera_id=0).reset(seed=0)[0]["pixels"]
    assert not np.array_equal(obs["pixels"], from_camera_0)


def test_state_observations_carry_no_pixels():
    env = reacher(obs_type="state")
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"state"} and obs["state"].shape == (4,)
    assert env.observation_spec() == {"state": ((4,), "float32")}
    assert set(env.goal_obs()) == {"state"}
    assert env.goal_frame().shape == (64, 64, 3)  # videos still work


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
    assert np.array_equal(env.get_state(), saved)
    again = env.step(np.array([1.0, 1.0]))[0]
    assert np.array_equal(first["pixels"], again["pixels"]) and np.array_equal(first["state"], again["state"])


@pytest.mark.parametrize("task,radius", [("easy", 0.05), ("hard", 0.015)])
def test_reacher_success_is_fingertip_within_target_radius_of_goal(task, radius):
    env = reacher(task=task)
    env.reset(seed=4)
    assert env.success_threshold == pytest.approx(radius)
    assert not env.is_success()  # goals are drawn away from the start
    env.set_state(env._goal_state)
    assert env.is_success() and env.distance_to_goal() == pytest.approx(0.0, abs=1e-9)
    env.set_state(goal_state_moved(env, joint=0, offset=np.pi))  # shoulder half a turn away
    assert env.distance_to_goal() > 0.1 and not env.is_success()


def test_fingertip_3cm_from_the_goal_succeeds_on_easy_but_not_on_hard():
    wrist_turn = 2 * np.arcsin(0.03 / (2 * REACHER_FINGER_LENGTH))  # moves the fingertip ~3 cm
    outcomes = {}
    for task in ("easy", "hard"):
        env = reacher(task=task)
        env.reset(seed=4)
        env.set_state(goal_state_moved(env, joint=1, offset=wrist_turn))
        assert env.distance_to_goal() == pytest.approx(0.03, abs=0.002)
        outcomes[task] = env.is_success()
    assert outcomes == {"easy": True, "hard": False}


def test_step_reports_success_and_terminates_on_it():
    env = reacher()
    env.reset(seed=4)
    env.set_state(env._goal_state)
    _, reward, terminated, truncated, info = env.step(np.zeros(2))
    assert info["success"] and terminated and not truncated
    assert reward == pytest.approx(-info["distance"])


def test_episode_is_truncated_after_its_step_budget():
    env = reacher(episode_length=3, terminate_on_success=False)
    env.reset(seed=0)
    truncations = [env.step(np.zeros(2))[3] for _ in range(3)]
    assert truncations == [False, False, True]


def test_point_mass_success_is_the_mass_within_3cm_of_the_goal():
    env = GoalReachingEnv("point_mass", "easy", obs_type="state")
    env.reset(seed=0)
    assert env.success_threshold == pytest.approx(0.03)
    assert not env.is_success()
    env.set_state(goal_state_moved(env, joint=0, offset=0.02))
    assert env.is_success()
    env.set_state(goal_state_moved(env, joint=0, offset=0.05))
    assert not env.is_success()


def test_goal_marker_never_collides_and_shows_in_videos_only():
    env = GoalReachingEnv("point_mass", "easy")
    obs = env.reset(seed=0)[0]["pixels"]
    assert env.physics.named.model.geom_contype["target"] == 0
    assert env.physics.named.model.geom_conaffinity["target"] == 0
    assert np.array_equal(obs, env.render())
    assert not np.array_equal(env.render(show_goal_marker=True), env.render())


def test_generic_domain_uses_random_rollout_goals_and_the_given_radius():
    env = GoalReachingEnv("cartpole", "swingup", obs_type="state", success_threshold=0.2, success_joints=[0])
    assert env.goal_task.source == "random_rollout"
    env.reset(seed=0)
    assert env.position().shape == (1,)  # the cart position alone
    env.set_state(env._goal_state)
    assert env.is_success()
    env.set_state(goal_state_moved(env, joint=0, offset=0.5))
    assert not env.is_success()


def test_generic_domain_without_success_threshold_says_what_to_set():
    with pytest.raises(ValueError, match="task 'cartpole-swingup' has no built-in success threshold; set env.success_threshold"):
        GoalReachingEnv("cartpole", "swingup")


def test_unknown_task_suggests_the_nearest():
    with pytest.raises(ValueError, match="unknown dm_control task 'reacher-esy'; did you mean 'reacher-easy'"):
        GoalReachingEnv("reacher", "esy")


def test_unknown_observation_type_lists_the_valid_ones():
    with pytest.raises(ValueError, match="obs_type must be one of"):
        reacher(obs_type="rgb")


def test_wrong_action_shape_is_rejected():
    env = reacher()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"reacher-easy expects actions of shape \(2,\); got \(3,\)"):
        env.step(np.zeros(3))


def test_step_before_reset_is_rejected():
    with pytest.raises(RuntimeError, match="reset"):
        reacher().step(np.zeros(2))


def test_renders_without_a_display():
    code = "from jepa_wm.data.envs import GoalReachingEnv; print(GoalReachingEnv('reacher', 'easy').reset(seed=0)[0]['pixels'].shape)"
    hidden = ("DISPLAY", "WAYLAND_DISPLAY", "MUJOCO_GL", "PYOPENGL_PLATFORM")
    env = {key: value for key, value in os.environ.items() if key not in hidden}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "(64, 64, 3)" in result.stdout


def test_state_observation_is_the_same_for_two_goals_from_the_same_physical_state():
    """Reacher's own `to_target` entry points at the (moved) target: it must not reach observations."""
    env = reacher(obs_type="state")
    env.reset(seed=1)
    start = env.get_state()
    first = env.observation()["state"]
    env.reset(seed=2)  # another goal, so the target marker moved
    env.set_state(start)
    assert np.array_equal(env.observation()["state"], first)
    assert np.allclose(first, np.concatenate([start[:2], start[2:4]]))  # joint angles, then velocities


def test_goal_dependent_observation_entries_are_recognised():
    from jepa_wm.data.envs.tasks import is_goal_dependent

    assert [key for key in ("position", "to_target", "velocity", "target_position", "dist_to_target", "target")
            if is_goal_dependent(key)] == ["to_target", "target_position", "dist_to_target", "target"]


def test_trajectory_offset_goal_is_the_state_that_many_random_steps_later():
    env = reacher(goal_source="trajectory_offset", goal_steps=25, trajectory_length=200, success="qpos",
                  success_threshold=0.05)
    env.reset(seed=3)
    assert env.success.name == "qpos" and env.success_threshold == 0.05
    # Replay: the start is on a uniform-random trajectory from the task's initial state, the goal 25 steps on.
    replay = reacher()
    replay._random.seed(3)
    replay._env.reset()
    start_index = replay._random.randint(0, 200 - 25 + 1)
    states = [replay.get_state()]
    for _ in range(start_index + 25):
        action = replay._random.uniform(replay.action_low, replay.action_high)
        for _ in range(2):
            replay._physics_step(action)
        states.append(replay.get_state())
    assert np.allclose(env.get_state(), states[start_index])
    assert np.allclose(env._goal_state, states[start_index + 25])


def test_trajectory_offset_starts_spread_along_the_trajectory():
    env = reacher(goal_source="trajectory_offset", goal_steps=25, success="qpos", success_threshold=0.05)
    velocities = [np.abs(env.reset(seed=seed)[0] is not None and env.get_state()[2:]).sum() for seed in range(8)]
    assert sum(v > 0 for v in velocities) >= 6  # the start is mid-trajectory: the arm is already moving


def test_qpos_success_needs_every_joint_within_the_tolerance_and_wraps_angles():
    env = reacher(goal_source="trajectory_offset", goal_steps=25, success="qpos", success_threshold=0.05)
    env.reset(seed=0)
    env.set_state(goal_state_moved(env, joint=0, offset=0.04))
    assert env.is_success() and env.distance_to_goal() == pytest.approx(0.04)
    env.set_state(goal_state_moved(env, joint=1, offset=-0.06))
    assert not env.is_success() and env.distance_to_goal() == pytest.approx(0.06)
    env.set_state(goal_state_moved(env, joint=0, offset=2 * np.pi + 0.01))  # a full turn of the shoulder
    assert env.is_success() and env.distance_to_goal() == pytest.approx(0.01)


def test_a_match_inside_an_action_repeat_counts_as_success():
    env = reacher(task="hard", action_repeat=4, terminate_on_success=False)
    env.reset(seed=4)
    # Start just before the goal, swinging through it: the fingertip passes the goal (within 1.5 cm)
    # after the 2nd of 4 control steps and is 4 cm past it after the 4th.
    state = env._goal_state.copy()
    state[2] = 8.0  # shoulder velocity (rad/s)
    state[0] -= 8.0 * 0.02 * 1.5  # 1.5 control steps before the goal
    env.set_state(state)
    _, _, _, _, info = env.step(np.zeros(2))
    assert info["success"] and not env.is_success() and info["distance"] > 0.03


def test_unknown_goal_source_and_success_criterion_name_the_choices():
    with pytest.raises(ValueError, match="unknown goal_source 'trajectory'; did you mean 'trajectory_offset'"):
        reacher(goal_source="trajectory")
    with pytest.raises(ValueError, match="unknown success criterion 'qpso'; did you mean 'qpos'"):
        reacher(success="qpso")


def test_every_env_config_has_the_same_keys_and_builds():
    from jepa_wm.data.envs import make_env

    from jepa_wm.config import group_choices, load_group, to_dict

    keys = None
    for name in group_choices("env"):
        cfg = to_dict(load_group("env", name))
        keys = keys or set(cfg)
        assert set(cfg) == keys, name
        env = make_env({**cfg, "obs_type": "state"})
        env.reset(seed=0)
        assert env.name == name


def test_the_env_is_a_gymnasium_env_that_passes_the_checker_and_vectorises():
    import gymnasium
    from gymnasium.utils.env_checker import check_env

    env = gymnasium.make("jepa_wm/reacher-easy-v0", image_size=32, episode_length=5)
    assert isinstance(env.unwrapped, GoalReachingEnv)
    check_env(env.unwrapped, skip_render_check=False)
    observation, info = env.reset(seed=3)
    assert env.observation_space.contains(observation) and "distance" in info
    assert env.action_space.shape == (2,) and env.action_space.dtype == np.float32
    vector = gymnasium.vector.SyncVectorEnv([lambda: gymnasium.make("jepa_wm/reacher-easy-v0", image_size=32,
                                                                    episode_length=5)] * 2)
    observations, _ = vector.reset(seed=[1, 2])
    assert observations["pixels"].shape == (2, 32, 32, 3)
    observations, rewards, terminated, truncated, _ = vector.step(vector.action_space.sample())
    assert rewards.shape == (2,) and observations["pixels"].dtype == np.uint8
    vector.close()
    env.close()


def test_no_reset_happens_inside_an_episode_or_an_action_repeat_past_dm_controls_own_time_limit():
    """Published pitfall: an env wrapper whose time limit ends an episode in the middle of repeated actions resets
    the physics there, and the goal pair or episode silently starts over. Ours steps the physics itself: past
    dm_control's 1,000-control-step limit (20 s of reacher), time only moves on."""
    env = reacher(obs_type="state", action_repeat=4, episode_length=300, terminate_on_success=False)
    env.reset(seed=0)
    start_time, dt = env.physics.data.time, env.physics.model.opt.timestep * env.physics_substeps
    times = []
    for step in range(300):  # 1,200 control steps
        *_, truncated, _ = env.step(np.zeros(env.action_dim))
        times.append(env.physics.data.time)
        assert truncated == (step == 299)
    assert times[-1] == pytest.approx(start_time + 1200 * dt) and np.all(np.diff(times) > 0)


def test_a_spinner_that_looks_the_same_after_half_a_turn_is_compared_modulo_half_a_turn():
    """finger-spin's spinner (joint_symmetry {2: 2}): the goal turned by half a turn is the goal a frame shows;
    without the symmetry it is as far as a goal can be."""
    symmetric = GoalReachingEnv("finger", "spin", success="qpos", success_threshold=0.15, joint_symmetry={2: 2})
    strict = GoalReachingEnv("finger", "spin", success="qpos", success_threshold=0.15)
    for env in (symmetric, strict):
        env.reset(seed=0)
        env.set_state(goal_state_moved(env, joint=2, offset=np.pi + 0.05))
    assert symmetric.is_success() and symmetric.distance_to_goal() == pytest.approx(0.05)
    assert not strict.is_success() and strict.distance_to_goal() == pytest.approx(np.pi - 0.05)
    symmetric.set_state(goal_state_moved(symmetric, joint=2, offset=np.pi / 2))  # a quarter turn: still far
    assert symmetric.distance_to_goal() == pytest.approx(np.pi / 2)
    assert list(symmetric.angle_periods) == pytest.approx([2 * np.pi, 2 * np.pi, np.pi])


@pytest.mark.parametrize("symmetry, message", [({0: 2}, "qpos 0, which is not a hinge"),
                                               ({2: 0}, "an integer >= 1"), ({2: "two"}, "an integer >= 1"),
                                               ({9: 2}, "qpos 9, which is not a hinge")])
def test_a_wrong_joint_symmetry_says_what_it_takes(symmetry, message):
    domain, task = ("point_mass", "easy") if 0 in symmetry else ("finger", "spin")
    with pytest.raises(ValueError, match=message):
        GoalReachingEnv(domain, task, success="qpos", success_threshold=0.1, joint_symmetry=symmetry)


def test_every_task_asks_only_for_what_its_frames_show():
    """Each env config's qpos success joints are in view, and every one that looks the same after 1/n of a turn
    (measured on rendered frames at the config's camera and size) is declared in joint_symmetry, and no other:
    success must never ask a pixel world model for what its goal image cannot show."""
    from jepa_wm.config import load_group, to_dict
    from jepa_wm.data.envs.tasks import symmetry_pairs, visual_symmetry

    configs = sorted(path.stem for path in (Path(__file__).parents[1] / "configs" / "env").glob("*.yaml"))
    assert "finger-spin" in configs
    for name in configs:
        cfg = to_dict(load_group("env", name))
        if cfg["success"] != "qpos":
            continue  # a geom's position (reacher's fingertip, the point mass): always drawn
        measured = visual_symmetry(cfg["domain"], cfg["task"], cfg["camera_id"], cfg["image_size"])
        joints = cfg.get("success_joints")
        joints = sorted(measured) if joints is None else joints
        hinges = [joint for joint in joints if joint in measured]
        assert all(measured[joint] for joint in hinges), f"{name}: a success joint is out of view: {measured}"
        expected = tuple((joint, measured[joint]) for joint in hinges if measured[joint] > 1)
        assert symmetry_pairs(cfg.get("joint_symmetry")) == expected, f"{name}: declared vs measured {measured}"
