"""DeepMind Control tasks as seeded goal-reaching environments (``gymnasium.Env``).

Importing this module registers every env config of ``configs/env/`` with gymnasium as ``jepa_wm/<name>-v0``:

    import gymnasium, jepa_wm.data.envs
    env = gymnasium.make("jepa_wm/reacher-easy-v0")                  # or with changes: ..., image_size=96
    envs = gymnasium.vector.SyncVectorEnv([lambda: gymnasium.make("jepa_wm/reacher-easy-v0")] * 4)
"""

from jepa_wm.data.envs.rendering import ensure_headless_rendering

ensure_headless_rendering()

from jepa_wm.data.envs.goal_env import OBS_TYPES, GoalReachingEnv, make_env  # noqa: E402

__all__ = ["GoalReachingEnv", "OBS_TYPES", "make_env", "make_named_env", "register_envs"]
GYMNASIUM_NAMESPACE = "jepa_wm"


def make_named_env(name: str, render_mode: str | None = None, **changes) -> GoalReachingEnv:
    """The env of ``configs/env/<name>.yaml``, with ``changes`` to its settings (what gymnasium.make calls).
    It renders RGB arrays (``render_mode`` rgb_array, or None)."""
    from jepa_wm.config import load_group, to_dict
    from jepa_wm.errors import ConfigError

    if render_mode not in (None, "rgb_array"):
        raise ConfigError(f"render_mode={render_mode!r}: these envs render RGB arrays only (render_mode='rgb_array')")
    return make_env({**to_dict(load_group("env", name)), **changes})


def register_envs() -> list[str]:
    """Register every env config with gymnasium (``jepa_wm/<name>-v0``); returns the ids."""
    import gymnasium

    from jepa_wm.config import group_choices

    ids = []
    for name in group_choices("env"):
        env_id = f"{GYMNASIUM_NAMESPACE}/{name}-v0"
        if env_id not in gymnasium.registry:
            gymnasium.register(env_id, entry_point=make_named_env, kwargs={"name": name})
        ids.append(env_id)
    return ids


register_envs()
