"""DeepMind Control tasks as seeded goal-reaching problems with a gymnasium-like API."""

from __future__ import annotations

from typing import Any

import numpy as np

from data.envs.rendering import ensure_headless_rendering

ensure_headless_rendering()

from dm_control import suite  # noqa: E402  (must follow the rendering backend choice)

from data.envs.tasks import GoalTask, check_suite_task, goal_task_for, randomize_joints  # noqa: E402

OBS_TYPES = ("pixels", "state", "both")


class GoalReachingEnv:
    """A ``dm_control.suite`` task where each episode asks to reach a goal state.

    ``reset(seed)`` draws a start state (the task's own initialisation) and a goal (see
    ``data.envs.tasks``) from one seeded generator, so a seed fixes start, goal and every frame.
    Observations are dicts with ``"pixels"`` (H, W, 3) uint8 and/or ``"state"`` (S,) float32, the
    task's flattened physics observation. One ``step`` applies the action ``action_repeat`` times.
    """

    def __init__(
        self,
        domain: str,
        task: str,
        obs_type: str = "pixels",
        image_size: int = 64,
        camera_id: int = 0,
        action_repeat: int = 2,
        episode_length: int = 50,
        success_radius: float | None = None,
        terminate_on_success: bool = True,
        goal_steps: int = 50,
        position_indices=None,
    ):
        if obs_type not in OBS_TYPES:
            raise ValueError(f"obs_type must be one of {OBS_TYPES}; got '{obs_type}'")
        if action_repeat < 1 or episode_length < 1 or image_size < 8:
            raise ValueError(
                f"need action_repeat >= 1, episode_length >= 1 and image_size >= 8; got "
                f"{action_repeat}, {episode_length}, {image_size}"
            )
        check_suite_task(domain, task)
        self.domain, self.task_name = domain, task
        self.name = f"{domain}-{task}"
        self.obs_type = obs_type
        self.image_size = image_size
        self.camera_id = camera_id
        self.action_repeat = action_repeat
        self.episode_length = episode_length
        self.terminate_on_success = terminate_on_success
        self.goal_steps = goal_steps
        self.goal_task: GoalTask = goal_task_for(domain, task, success_radius, position_indices)

        self._random = np.random.RandomState(0)
        self._env = suite.load(domain, task, task_kwargs={"random": self._random})
        self._task = self._env.task
        self.physics = self._env.physics
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

        self._goal_state: np.ndarray | None = None
        self._goal_position: np.ndarray | None = None
        self._goal_obs: dict[str, np.ndarray] | None = None
        self._steps = 0
        self.success_radius = 0.0

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
    def reset(self, seed: int | None = None) -> dict[str, np.ndarray]:
        """Start an episode; the same seed always gives the same start, goal and frames."""
        if seed is not None:
            self._random.seed(int(seed) % 2**32)
        self._env.reset()
        self._steps = 0
        self._sample_goal()
        return self.observation()

    def step(self, action) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Apply ``action`` (clipped to the action bounds) ``action_repeat`` times.

        Reward is the negative distance to the goal; ``terminated`` is success when
        ``terminate_on_success``; ``truncated`` is the end of the episode's step budget.
        """
        if self._goal_state is None:
            raise RuntimeError("call reset() before step()")
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (self.action_dim,):
            raise ValueError(f"{self.name} expects actions of shape ({self.action_dim},); got {action.shape}")
        action = np.clip(action, self.action_low, self.action_high)
        for _ in range(self.action_repeat):
            self._physics_step(action)
        self._steps += 1
        distance = self.distance_to_goal()
        success = distance <= self.success_radius
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
        start = self.physics.get_state().copy()
        task = self.goal_task
        if task.success_radius is None:
            self.success_radius = float(self.physics.named.model.geom_size[task.marker_geom, 0])
        else:
            self.success_radius = float(task.success_radius)
        start_position = task.position.of_physics(self.physics)
        # A goal already met at the start would be a free success: draw again (bounded).
        for _ in range(100):
            self._draw_goal_state(start)
            goal_position = task.position.of_physics(self.physics)
            if np.linalg.norm(goal_position - start_position) > 2 * self.success_radius:
                break
        self._goal_state = self.physics.get_state().copy()
        self._goal_position = goal_position
        if task.marker_geom is not None:
            self.physics.named.model.geom_pos[task.marker_geom][:2] = goal_position
        self.physics.forward()
        self._goal_obs = self.observation()
        self.set_state(start)

    def _draw_goal_state(self, start: np.ndarray) -> None:
        self.set_state(start)
        if self.goal_task.goal_sampler == "random_joints":
            randomize_joints(self.physics, self._random)
            return
        for _ in range(self.goal_steps * self.action_repeat):
            self._physics_step(self._random.uniform(self.action_low, self.action_high))

    def goal_obs(self) -> dict[str, np.ndarray]:
        """The observation of the goal state (with the marker, if any, on the goal)."""
        if self._goal_obs is None:
            raise RuntimeError("call reset() before goal_obs()")
        return {key: value.copy() for key, value in self._goal_obs.items()}

    @property
    def goal_position(self) -> np.ndarray:
        return self._goal_position.copy()

    def position(self) -> np.ndarray:
        """The coordinates success is measured on, in the current state."""
        return self.goal_task.position.of_physics(self.physics)

    def distance_to_goal(self) -> float:
        return float(np.linalg.norm(self.position() - self._goal_position))

    def is_success(self) -> bool:
        return self.distance_to_goal() <= self.success_radius

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
        if not (show_goal_marker and self._marker_rgba is not None):
            return self.physics.render(size, size, camera_id=self.camera_id)
        rgba = self.physics.named.model.geom_rgba
        rgba[self.goal_task.marker_geom] = self._marker_rgba
        try:
            return self.physics.render(size, size, camera_id=self.camera_id)
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
        return np.concatenate([np.asarray(v, dtype=np.float32).ravel() for v in observation.values()])

    def close(self) -> None:
        self._env.close()


def make_env(env_cfg, **overrides) -> GoalReachingEnv:
    """Build an env from an ``env`` config section (see ``configs/env/*.yaml``)."""
    settings = dict(env_cfg)
    settings.pop("name", None)
    settings.update(overrides)
    return GoalReachingEnv(**settings)
