"""DeepMind Control tasks as seeded goal-reaching problems with a gymnasium-like API."""

from __future__ import annotations

import inspect
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from jepa_wm.data.envs.rendering import ensure_headless_rendering

from jepa_wm.errors import ConfigError

ensure_headless_rendering()

from dm_control import suite  # noqa: E402  (must follow the rendering backend choice)
from jepa_wm.data.envs.variation import SceneVariation, check_strengths  # noqa: E402
from jepa_wm.data.envs.tasks import (  # noqa: E402
    PLANNING_KEYS,
    GoalTask,
    check_suite_task,
    goal_task_for,
    is_goal_dependent,
    randomize_joints,
    wrap_angles,
)

OBS_TYPES = ("pixels", "state", "both")


class GoalReachingEnv(gymnasium.Env):
    """A ``dm_control.suite`` task where each episode asks to reach a goal state, as a ``gymnasium.Env``.

    ``reset(seed=...)`` draws a start state and a goal (see ``jepa_wm.data.envs.tasks`` for the goal sources
    and success criteria) from one seeded generator, so a seed fixes start, goal and every frame; it returns
    ``(observation, info)``. Observations are dicts (a ``spaces.Dict``) with ``"pixels"`` (H, W, 3) uint8 in
    0-255 and/or ``"state"`` (S,) float32, the task's flattened physics observation without its
    goal-dependent entries. Actions are the env's own (a ``spaces.Box``, e.g. [-1, 1] per actuator). One
    ``step`` applies the action ``action_repeat`` times; the goal counts as reached if it is met after any of
    them. ``gymnasium.make("jepa_wm/reacher-easy-v0")`` (after ``import jepa_wm.data.envs``) builds the env of
    ``configs/env/reacher-easy.yaml``; vector envs work as with any gymnasium env.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 25}

    def __init__(
        self,
        domain: str,
        task: str,
        obs_type: str = "pixels",
        image_size: int = 64,
        camera_id: int = 0,
        action_repeat: int = 2,
        episode_length: int = 50,
        terminate_on_success: bool = True,
        goal_source: str | None = None,
        goal_steps: int = 50,
        trajectory_length: int = 200,
        success: str = "position",
        success_threshold: float | None = None,
        success_joints=None,
        joint_symmetry=None,
        name: str | None = None,
        variation=None,
    ):
        if obs_type not in OBS_TYPES:
            raise ValueError(f"obs_type must be one of {OBS_TYPES}; got '{obs_type}'")
        if action_repeat < 1 or episode_length < 1 or image_size < 8 or goal_steps < 1:
            raise ValueError(
                f"need action_repeat >= 1, episode_length >= 1, image_size >= 8 and goal_steps >= 1; got "
                f"{action_repeat}, {episode_length}, {image_size}, {goal_steps}"
            )
        check_suite_task(domain, task)
        self.domain, self.task_name = domain, task
        self.name = name or f"{domain}-{task}"  # the env config's name, e.g. reacher-offset25
        self.obs_type = obs_type
        self.image_size = image_size
        self.camera_id = camera_id
        self.action_repeat = action_repeat
        self.episode_length = episode_length
        self.terminate_on_success = terminate_on_success
        self.goal_steps = goal_steps
        self.trajectory_length = trajectory_length

        self._random = np.random.RandomState(0)
        self._env = suite.load(domain, task, task_kwargs={"random": self._random})
        self._task = self._env.task
        self.physics = self._env.physics
        self.goal_task: GoalTask = goal_task_for(
            domain, task, goal_source, success, success_threshold, success_joints,
            marker_radius=getattr(self._task, "_target_size", None), joint_symmetry=joint_symmetry,
        )
        if self.goal_task.source == "trajectory_offset" and trajectory_length < goal_steps:
            raise ValueError(f"trajectory_length ({trajectory_length}) must be >= goal_steps ({goal_steps}) "
                             f"for trajectory_offset goals")
        self.success = self.goal_task.success
        self.success_threshold = self.success.threshold
        if not np.isfinite(self.success_threshold) or self.success_threshold <= 0:
            raise ValueError(f"success_threshold must be a positive distance; got {self.success_threshold}")
        if self.success.joints is not None and not all(0 <= joint < self.physics.model.nq for joint in self.success.joints):
            raise ValueError(f"success_joints {list(self.success.joints)} are not all qpos indices of {domain} "
                             f"(0..{self.physics.model.nq - 1})")
        cameras = self.physics.model.ncam
        if not -1 <= camera_id < cameras:
            raise ValueError(f"camera_id {camera_id} does not exist in {domain}: it has cameras 0..{cameras - 1} "
                             f"(-1 is the free camera)")
        buffer = self.physics.model.vis.global_
        if image_size > min(buffer.offwidth, buffer.offheight):
            raise ValueError(f"image_size {image_size} is larger than {domain}'s offscreen buffer "
                             f"({buffer.offwidth}x{buffer.offheight}); use at most {min(buffer.offwidth, buffer.offheight)}")
        self._angle_periods = self.success.angle_periods(self.physics.model.ptr)
        self._coordinate_names = self.success.coordinate_names(self.physics.model.ptr)
        self.physics_substeps = max(1, round(self._env.control_timestep() / self.physics.timestep()))
        spec = self._env.action_spec()
        self.action_low = np.asarray(spec.minimum, dtype=np.float32) * np.ones(spec.shape, np.float32)
        self.action_high = np.asarray(spec.maximum, dtype=np.float32) * np.ones(spec.shape, np.float32)
        self.action_dim = int(spec.shape[0])
        marker = self.goal_task.marker_geom
        self._marker_rgba = None
        if marker is not None:
            # The goal marker is only drawn, and only in videos: it must never push the arm or the mass,
            # and observations show the physical state alone (a static marker is a trivially
            # predictable feature that an encoder would otherwise latch onto).
            self.physics.named.model.geom_contype[marker] = 0
            self.physics.named.model.geom_conaffinity[marker] = 0
            self._marker_rgba = self.physics.named.model.geom_rgba[marker].copy()
            self.physics.named.model.geom_rgba[marker, 3] = 0.0

        # What changes between episodes (data/envs/variation.py): drawn at each reset from the episode's seed.
        strengths = check_strengths(variation)
        self.variation = SceneVariation(self.physics, strengths, skip_geoms=[marker]) if strengths else None
        self.episode_variation: dict[str, float] = {}

        self._goal_state: np.ndarray | None = None
        self._goal_coordinates: np.ndarray | None = None
        self._goal_obs: dict[str, np.ndarray] | None = None
        self._steps = 0
        self.render_mode = "rgb_array"
        self.action_space = spaces.Box(self.action_low, self.action_high, dtype=np.float32)
        self.observation_space = spaces.Dict({
            key: spaces.Box(0, 255, shape, np.uint8) if dtype == "uint8" else spaces.Box(-np.inf, np.inf, shape, np.float32)
            for key, (shape, dtype) in self.observation_spec().items()})

    # ----------------------------------------------------------------------------------------- specs
    def observation_spec(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """Shape and dtype of each observation key, e.g. ``{"pixels": ((64, 64, 3), "uint8")}``."""
        spec = {}
        if self.obs_type in ("pixels", "both"):
            spec["pixels"] = ((self.image_size, self.image_size, 3), "uint8")
        if self.obs_type in ("state", "both"):
            spec["state"] = ((self._state_vector().shape[0],), "float32")
        return spec

    @property
    def state_size(self) -> int:
        """Length of ``get_state()``: the full physics state (positions, velocities, activations)."""
        return int(self.physics.get_state().shape[0])

    # ----------------------------------------------------------------------------------- episodes
    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict[str, np.ndarray], dict]:
        """Start an episode: (observation, info with the goal's distance); the same seed always gives the same
        start, goal and frames."""
        super().reset(seed=seed)
        if seed is not None:
            self._random.seed(int(seed) % 2**32)
        if self.variation is not None:  # before the task's own reset (some let the body settle under its physics),
            # and before the goal is drawn: the goal image shows the same scene
            self.episode_variation = self.variation.apply(seed if seed is not None else self._random.randint(2**31))
        self._env.reset()
        self._steps = 0
        self._sample_goal()
        return self.observation(), {"distance": self.distance_to_goal(), "success": self.is_success(), "steps": 0,
                                    "variation": dict(self.episode_variation)}

    def step(self, action) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Apply ``action`` (clipped to the action bounds) ``action_repeat`` times.

        ``info["success"]`` is true when the goal was met after any of those control steps (a match
        inside an action repeat counts, as in the Reacher protocol). Reward is the negative distance to
        the goal; ``terminated`` is success when ``terminate_on_success``; ``truncated`` is the end of
        the episode's step budget.
        """
        if self._goal_state is None:
            raise RuntimeError("call reset() before step()")
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (self.action_dim,):
            raise ValueError(f"{self.name} expects actions of shape ({self.action_dim},); got {action.shape}")
        action = np.clip(action, self.action_low, self.action_high)
        success = False
        for _ in range(self.action_repeat):
            self._physics_step(action)
            success = success or self.is_success()
        self._steps += 1
        distance = self.distance_to_goal()
        terminated = bool(success and self.terminate_on_success)
        truncated = self._steps >= self.episode_length
        info = {"distance": distance, "success": bool(success), "steps": self._steps}
        return self.observation(), -distance, terminated, truncated, info

    def _physics_step(self, action: np.ndarray) -> None:
        # The task's own control hooks, without dm_control's time limit and reward bookkeeping.
        self._task.before_step(action, self.physics)
        self.physics.step(self.physics_substeps)
        self._task.after_step(self.physics)

    # --------------------------------------------------------------------------------------- goals
    def _sample_goal(self) -> None:
        """Draw (start, goal) with the task's goal source and leave the physics at the start."""
        if self.goal_task.source == "trajectory_offset":
            start, goal = self._trajectory_offset_pair()
        else:
            start = self.physics.get_state().copy()
            start_coordinates = self.success.coordinates(self.physics)
            # A goal already met at the start would be a free success: draw again (bounded).
            for _ in range(100):
                self._draw_goal_state(start)
                goal = self.physics.get_state().copy()
                gap = self.success.distance(self.success.coordinates(self.physics), start_coordinates, self._angle_periods)
                if gap > 2 * self.success_threshold:
                    break
        self.set_state(goal)
        self._goal_state = goal
        self._goal_coordinates = self.success.coordinates(self.physics)
        if self.goal_task.marker_geom is not None:
            # For videos: the marker shows where the goal puts the fingertip or the mass.
            goal_xy = self.physics.named.data.geom_xpos[self.goal_task.marker_follows][:2]
            self.physics.named.model.geom_pos[self.goal_task.marker_geom][:2] = goal_xy
        self.physics.forward()
        self._goal_obs = self.observation()
        self.set_state(start)

    def _random_action(self) -> np.ndarray:
        return self._random.uniform(self.action_low, self.action_high)

    def _draw_goal_state(self, start: np.ndarray) -> None:
        self.set_state(start)
        if self.goal_task.source == "random_joints":
            randomize_joints(self.physics, self._random)
            return
        for _ in range(self.goal_steps):
            action = self._random_action()
            for _ in range(self.action_repeat):
                self._physics_step(action)

    def _trajectory_offset_pair(self) -> tuple[np.ndarray, np.ndarray]:
        """A start drawn uniformly on a uniform-random-policy trajectory from the task's initial state,
        and the state ``goal_steps`` env steps later on that trajectory (no rejection: as published)."""
        start_index = self._random.randint(0, self.trajectory_length - self.goal_steps + 1)
        start = None
        for step in range(start_index + self.goal_steps):
            if step == start_index:
                start = self.physics.get_state().copy()
            action = self._random_action()
            for _ in range(self.action_repeat):
                self._physics_step(action)
        if start is None:  # start_index == 0 and goal_steps == 0 cannot happen (goal_steps >= 1)
            raise AssertionError("trajectory start was not recorded")
        return start, self.physics.get_state().copy()

    def goal_obs(self) -> dict[str, np.ndarray]:
        """The observation of the goal state (the marker, if any, is never in observations)."""
        if self._goal_obs is None:
            raise RuntimeError("call reset() before goal_obs()")
        return {key: value.copy() for key, value in self._goal_obs.items()}

    @property
    def goal_coordinates(self) -> np.ndarray:
        """The goal's success coordinates (fingertip or mass x-y, or joint positions)."""
        return self._goal_coordinates.copy()

    @property
    def goal_pose(self) -> np.ndarray:
        """The goal's joint positions (all of qpos): what a whole-pose distance compares."""
        return self._goal_state[: self.physics.model.nq].copy()

    @property
    def angle_periods(self) -> np.ndarray:
        """(C,) the period each success coordinate is compared modulo (2 pi for a hinge, 2 pi / n for one that looks
        the same after 1/n of a turn; 0: not an angle)."""
        return self._angle_periods.copy()

    @property
    def coordinate_names(self) -> list[str]:
        """(C,) the success coordinates' names (joints by name, or the geom's x and y)."""
        return list(self._coordinate_names)

    def coordinates_off_goal(self) -> list[str]:
        """The success joints (by name) now farther from the goal's than the tolerance: where a failed episode fell
        short (the qpos criterion; a position criterion is one distance and names none)."""
        if self.success.metric != "max_joint":
            return []
        errors = np.abs(wrap_angles(self.position() - self._goal_coordinates, self._angle_periods))
        return [name for name, error in zip(self._coordinate_names, errors) if error > self.success_threshold]

    def position(self) -> np.ndarray:
        """The success coordinates of the current state."""
        return self.success.coordinates(self.physics)

    def distance_to_goal(self) -> float:
        """The success criterion's distance (Euclidean, or the largest joint error for ``qpos``)."""
        return float(self.success.distance(self.position(), self._goal_coordinates, self._angle_periods))

    def is_success(self) -> bool:
        return self.distance_to_goal() <= self.success_threshold

    # ----------------------------------------------------------------------------- state & pixels
    def get_state(self) -> np.ndarray:
        """The physics state (qpos, qvel, act): with ``set_state`` this lets a planner use the simulator."""
        return self.physics.get_state().copy()

    def set_state(self, state: np.ndarray) -> None:
        with self.physics.reset_context():
            self.physics.set_state(np.asarray(state, dtype=np.float64))

    def render(self, size: int | None = None, show_goal_marker: bool = False) -> np.ndarray:
        """A frame from the env's camera; ``show_goal_marker`` draws the goal marker (for videos)."""
        size = size or self.image_size
        extra = {"scene_callback": self.variation.scene_callback} if self.variation is not None else {}
        if not (show_goal_marker and self._marker_rgba is not None):
            return self.physics.render(size, size, camera_id=self.camera_id, **extra)
        rgba = self.physics.named.model.geom_rgba
        rgba[self.goal_task.marker_geom] = self._marker_rgba
        try:
            return self.physics.render(size, size, camera_id=self.camera_id, **extra)
        finally:
            rgba[self.goal_task.marker_geom, 3] = 0.0

    def goal_frame(self, size: int | None = None) -> np.ndarray:
        """The goal state rendered at any size (for videos; works whatever the observation type)."""
        current = self.get_state()
        self.set_state(self._goal_state)
        frame = self.render(size, show_goal_marker=True)
        self.set_state(current)
        return frame

    def observation(self) -> dict[str, np.ndarray]:
        obs = {}
        if self.obs_type in ("pixels", "both"):
            obs["pixels"] = np.ascontiguousarray(self.render())  # MuJoCo returns a flipped view
        if self.obs_type in ("state", "both"):
            obs["state"] = self._state_vector()
        return obs

    def _state_vector(self) -> np.ndarray:
        observation = self._task.get_observation(self.physics)
        return np.concatenate([np.asarray(value, dtype=np.float32).ravel() for key, value in observation.items()
                               if not is_goal_dependent(key)])

    def close(self) -> None:
        self._env.close()


# Keys of an env config that are about training on the task or planning in it, not about the env itself.
TRAINING_KEYS = ("train_overrides",)


def make_env(env_cfg, **overrides) -> GoalReachingEnv:
    """Build an env from an ``env`` config section (see ``configs/env/*.yaml``).

    Settings the env (or dm_control under it) rejects raise ``ConfigError`` naming the env config: they are
    the user's input, so entry points print one line instead of a traceback.
    """
    settings = {key: value for key, value in dict(env_cfg).items() if key not in TRAINING_KEYS + PLANNING_KEYS}
    settings.update(overrides)
    try:
        env = GoalReachingEnv(**settings)
        # what cost.name=auto plans with in this task, per kind of learned cost (none: it + the latent distance)
        env.planning_cost = dict(dict(env_cfg).get("planning_cost") or {})
        return env
    except ConfigError:
        raise
    except TypeError as error:  # an unknown setting, e.g. +env.colour=red
        valid = [name for name in inspect.signature(GoalReachingEnv).parameters]
        unknown = sorted(set(settings) - set(valid))
        raise ConfigError(f"env {settings.get('name')}: unknown setting(s) {unknown or error} "
                          f"(valid: {', '.join(valid)})") from error
    except (ValueError, KeyError, IndexError) as error:
        raise ConfigError(f"env {settings.get('name')}: {error}") from error
