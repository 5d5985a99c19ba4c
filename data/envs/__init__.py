"""DeepMind Control tasks as seeded goal-reaching environments."""

from jepa_wm.data.envs.rendering import ensure_headless_rendering

ensure_headless_rendering()

from jepa_wm.data.envs.goal_env import OBS_TYPES, GoalReachingEnv, make_env  # noqa: E402

__all__ = ["GoalReachingEnv", "OBS_TYPES", "make_env"]
