"""Shared fixtures: small real datasets collected from MuJoCo once per test session."""

import pytest
from jepa_wm.data.collect import collect

from jepa_wm.config import load_group, to_dict

OU_POLICY = {"name": "ou", "theta": 0.15, "sigma": 0.3}


@pytest.fixture(scope="session")
def reacher_env_cfg():
    """configs/env/reacher-easy.yaml as a plain dict (pixels 64x64, action_repeat 2); copy before changing."""
    return to_dict(load_group("env", "reacher-easy"))


@pytest.fixture(scope="session")
def reacher_pixel_dataset(tmp_path_factory, reacher_env_cfg):
    """6 reacher-easy episodes of 30 steps (one window of the default model: 2 + 5 frames, frameskip 5) with 64x64 pixels (and states), 2 episodes per shard.

    Seed 0, OU policy. Arrays per episode: pixels (21, 64, 64, 3) uint8, state (21, 6), physics (21, 4),
    position (21, 2), action (20, 2) in [-1, 1]. Shared by the whole session: read it, or copy it to break it.
    """
    out = tmp_path_factory.mktemp("reacher-pixels")
    return collect(reacher_env_cfg, out, episodes=6, steps_per_episode=30, policy=OU_POLICY, seed=0,
                   workers=1, episodes_per_shard=2, progress=False)


@pytest.fixture(scope="session")
def reacher_second_seed_dataset(tmp_path_factory, reacher_env_cfg):
    """4 more episodes like ``reacher_pixel_dataset``'s, collected with seed 1 in shards of 3: more data of its task."""
    return collect(reacher_env_cfg, tmp_path_factory.mktemp("reacher-seed-1"), episodes=4, steps_per_episode=30,
                   policy=OU_POLICY, seed=1, workers=1, episodes_per_shard=3, progress=False)


@pytest.fixture(scope="session")
def reacher_state_dataset(tmp_path_factory, reacher_env_cfg):
    """The same episodes (same seed, identical trajectories) with state vectors only, no pixels."""
    out = tmp_path_factory.mktemp("reacher-states")
    return collect({**reacher_env_cfg, "obs_type": "state"}, out, episodes=6, steps_per_episode=30,
                   policy=OU_POLICY, seed=0, workers=1, episodes_per_shard=2, progress=False)


@pytest.fixture(scope="session")
def reacher_learning_dataset(tmp_path_factory, reacher_env_cfg):
    """Enough reacher-easy data for a world model that plans: 100 episodes x 80 steps (slow tests only)."""
    out = tmp_path_factory.mktemp("reacher-learning")
    return collect(reacher_env_cfg, out, episodes=100, steps_per_episode=80, policy=OU_POLICY, seed=0,
                   workers=2, episodes_per_shard=10, progress=False)


@pytest.fixture(scope="session")
def point_mass_learning_dataset(tmp_path_factory):
    """point_mass-easy data for a model that plans: 100 episodes x 80 steps (slow tests only)."""
    out = tmp_path_factory.mktemp("point-mass-learning")
    return collect(to_dict(load_group("env", "point_mass-easy")), out, episodes=100, steps_per_episode=80,
                   policy=OU_POLICY, seed=0, workers=2, episodes_per_shard=10, progress=False)


@pytest.fixture(scope="module")
def reacher_env(reacher_env_cfg):
    """The reacher-easy goal-reaching env (64x64 pixels), shared by a test module."""
    from jepa_wm.data.envs import make_env

    env = make_env(reacher_env_cfg)
    yield env
    env.close()


def kill_training_at(monkeypatch, trainer_class, step: int):
    """Make ``trainer_class.train`` raise KeyboardInterrupt once it has reported ``step`` (a Ctrl-C there);
    returns the real ``train``, to put back with ``monkeypatch.setattr``."""
    real_train = trainer_class.train

    def killed(self, until, progress=None):
        def kill(done, loss):
            progress(done, loss)
            if done == step:
                raise KeyboardInterrupt

        return real_train(self, until, kill)

    monkeypatch.setattr(trainer_class, "train", killed)
    return real_train
