"""Offline trajectory collection: parallel, seeded, atomic and resumable.

Every episode's randomness comes from ``(seed, episode index)`` alone, so the data do not depend on
the number of workers or on which worker ran which shard, and a resumed collection is identical to
an uninterrupted one.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from jepa_wm.data.envs import OBS_TYPES, make_env
from jepa_wm.data.envs.variation import recorded_env
from jepa_wm.data.policies import make_policy
from jepa_wm.data.storage import (
    DATASET_FILES,
    FORMAT_VERSION,
    MANIFEST_NAME,
    DatasetError,
    load_manifest,
    new_manifest,
    remove_partial_files,
    sealed,
    shard_file,
    shard_name,
    write_shard,
)
from tqdm.auto import tqdm

from jepa_wm.errors import ConfigError
from jepa_wm.files import DirectoryLock, check_output_directory, is_temporary_of, write_json_atomic
from jepa_wm.seeds import COLLECTION_ENV, COLLECTION_POLICY, episode_seed

_worker_envs: dict[str, Any] = {}  # environments of this process, by settings, built on first use


def collection_env_settings(env_cfg: dict[str, Any]) -> dict[str, Any]:
    """Collection always records the state vector; pixels are added when the task uses them."""
    settings = dict(env_cfg)
    obs_type = env_cfg.get("obs_type", "pixels")
    if obs_type not in OBS_TYPES:
        raise ConfigError(f"env.obs_type must be one of {', '.join(OBS_TYPES)}; got {obs_type!r}")
    settings["obs_type"] = "state" if obs_type == "state" else "both"
    return settings


def dataset_header(env_cfg, steps_per_episode, policy_cfg, seed, episodes, episodes_per_shard) -> dict[str, Any]:
    """Everything that defines a dataset; a resumed collection must match it exactly. In the form the manifest
    stores it (JSON: a mapping's integer keys, such as ``joint_symmetry``'s, become strings), so that the
    settings a dataset was collected with compare equal to themselves read back."""
    env = make_env(collection_env_settings(env_cfg))
    env.reset(seed=0)
    header = {
        "format_version": FORMAT_VERSION,
        "env": recorded_env(env_cfg),
        "observations": {key: list(shape) for key, (shape, _) in env.observation_spec().items()},
        "physics_size": env.state_size,
        "position_size": int(env.position().shape[0]),
        "action": {"dim": env.action_dim, "low": env.action_low.tolist(), "high": env.action_high.tolist()},
        "action_repeat": env.action_repeat,
        "steps_per_episode": int(steps_per_episode),
        "policy": dict(policy_cfg),
        "seed": int(seed),
        "episodes": int(episodes),
        "episodes_per_shard": int(episodes_per_shard),
    }
    env.close()
    return json.loads(json.dumps(header))


def collect_episode(env, policy, seed: int, episode: int, steps: int) -> dict[str, np.ndarray]:
    """Run one episode of ``steps`` actions (ignoring success) and return its arrays."""
    obs, _ = env.reset(seed=episode_seed(seed, episode, COLLECTION_ENV))
    rng = np.random.default_rng(episode_seed(seed, episode, COLLECTION_POLICY))
    policy.reset(rng)
    frames = {key: [value] for key, value in obs.items()}
    physics, position, actions = [env.get_state()], [env.position()], []
    for _ in range(steps):
        action = policy.act(rng)
        obs, *_ = env.step(action)
        actions.append(action)
        for key, value in obs.items():
            frames[key].append(value)
        physics.append(env.get_state())
        position.append(env.position())
    episode_arrays = {
        "action": np.asarray(actions, np.float32),
        "state": np.asarray(frames["state"], np.float32),
        "physics": np.asarray(physics, np.float32),
        "position": np.asarray(position, np.float32),
    }
    if "pixels" in frames:
        episode_arrays["pixels"] = np.asarray(frames["pixels"], np.uint8)
    return episode_arrays


def _collect_shard(job: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Collect and atomically write one shard; runs in a worker process."""
    settings = collection_env_settings(job["env"])
    key = json.dumps(settings, sort_keys=True)
    if key not in _worker_envs:
        _worker_envs[key] = make_env(settings)
    env = _worker_envs[key]
    policy_cfg = dict(job["policy"])
    policy = make_policy(policy_cfg.pop("name"), env.action_low, env.action_high, **policy_cfg)
    first, last = job["episodes"]
    episodes = [collect_episode(env, policy, job["seed"], index, job["steps"]) for index in range(first, last)]
    arrays = {key: np.stack([episode[key] for episode in episodes]) for key in episodes[0]}
    arrays["episode"] = np.arange(first, last, dtype=np.int64)
    return job["name"], write_shard(Path(job["out"]), job["name"], arrays)


def _open_manifest(out: Path, header: dict[str, Any]) -> dict[str, Any]:
    """The manifest to continue from: a fresh one, or the existing one if it describes the same dataset."""
    if not (out / MANIFEST_NAME).exists():
        manifest = new_manifest(header)
        write_json_atomic(out / MANIFEST_NAME, manifest)
        return manifest
    manifest = load_manifest(out)
    differences = [key for key in header if manifest.get(key) != header[key]]
    if differences and not manifest["shards"]:
        # Nothing was collected under the old settings (its first shard failed): nothing to lose.
        manifest = new_manifest(header)
        write_json_atomic(out / MANIFEST_NAME, manifest)
        return manifest
    if differences:
        details = "; ".join(f"{key}: on disk {manifest.get(key)!r}, requested {header[key]!r}" for key in differences)
        raise DatasetError(
            f"{out} already holds a different dataset ({details}). Use another out= directory, "
            f"or repeat the original settings to resume it"
        )
    return manifest


def _shard_on_disk(out: Path, name: str, record: dict[str, Any] | None) -> bool:
    """Whether shard ``name`` is finished: listed in the manifest with every one of its files present."""
    files = (record or {}).get("files") or {}
    return bool(files) and all((out / shard_file(name, key)).is_file() for key in files)


def collect(
    env_cfg: dict[str, Any],
    out: str | Path,
    episodes: int,
    steps_per_episode: int,
    policy: dict[str, Any],
    seed: int = 0,
    workers: int = 1,
    episodes_per_shard: int = 10,
    progress: bool = True,
) -> Path:
    """Collect ``episodes`` episodes into ``out``; rerunning after an interruption finishes the job.

    Finished shards (listed in the manifest with all their files on disk) are kept; missing ones,
    and shards with a deleted file, are collected. Returns the dataset directory.
    """
    if episodes < 1 or steps_per_episode < 1 or episodes_per_shard < 1 or workers < 1 or seed < 0:
        raise ConfigError("episodes, steps_per_episode, episodes_per_shard and workers must all be >= 1, seed >= 0")
    out = check_output_directory(out)
    settings = dict(policy)
    make_policy(settings.pop("name"), [-1.0], [1.0], **settings)  # a bad policy fails here, not in a worker
    header = dataset_header(env_cfg, steps_per_episode, policy, seed, episodes, episodes_per_shard)
    out.mkdir(parents=True, exist_ok=True)  # (a directory that had to be made is empty: nothing is refused then)
    with DirectoryLock(out, "a dataset"):  # first, so a collection at work there is named as such, not as strangers
        if not (out / MANIFEST_NAME).exists() and (found := sorted(_user_files(out))):
            raise ConfigError(f"out={out} is not empty and holds no jepa-wm dataset ({', '.join(found[:3])}...); "
                              f"collect into a new or empty directory")
        return _collect_locked(out, header, env_cfg, policy, seed, steps_per_episode, episodes, episodes_per_shard,
                               workers, progress)


def _user_files(directory: Path) -> list[str]:
    """Entries of a directory that collection did not write (its lock and temporaries aside)."""
    return [entry.name for entry in directory.iterdir()
            if not is_temporary_of(entry.name, DATASET_FILES)]


def _collect_locked(out: Path, header, env_cfg, policy, seed, steps_per_episode, episodes, episodes_per_shard,
                    workers, progress) -> Path:
    remove_partial_files(out)
    manifest = _open_manifest(out, header)

    jobs = []
    for index, first in enumerate(range(0, episodes, episodes_per_shard)):
        name = shard_name(index)
        if _shard_on_disk(out, name, manifest["shards"].get(name)):
            continue
        manifest["shards"].pop(name, None)
        last = min(first + episodes_per_shard, episodes)
        jobs.append({"env": dict(env_cfg), "policy": dict(policy), "seed": seed, "steps": steps_per_episode,
                     "episodes": (first, last), "name": name, "out": str(out)})
    done = sum(record["episodes"][1] - record["episodes"][0] for record in manifest["shards"].values())
    bar = tqdm(total=episodes, initial=done, unit="episode", desc=f"collect {header['env'].get('name', '')}",
               disable=not progress)

    def record(name: str, shard: dict[str, Any]) -> None:
        manifest["shards"][name] = sealed(manifest, name, shard)
        write_json_atomic(out / MANIFEST_NAME, manifest)
        bar.update(shard["episodes"][1] - shard["episodes"][0])

    try:
        if workers == 1 or len(jobs) <= 1:
            for job in jobs:
                record(*_collect_shard(job))
        else:
            # spawn, not fork: each worker needs its own OpenGL context, which fork does not give.
            context = multiprocessing.get_context("spawn")
            with context.Pool(min(workers, len(jobs))) as pool:
                for result in pool.imap_unordered(_collect_shard, jobs):
                    record(*result)
    finally:
        bar.close()
    return out


def _plain(value):
    """Nested mappings and sequences (e.g. OmegaConf containers) as plain dicts and lists, for JSON."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(item) for item in value]
    return value


def collect_from_config(cfg) -> Path:
    """Collect with the settings of a ``configs/collect.yaml``-style mapping; returns the dataset directory."""
    policy = {"name": cfg["policy"]["name"]}
    if policy["name"] == "ou":
        policy.update(theta=float(cfg["policy"]["theta"]), sigma=float(cfg["policy"]["sigma"]))
    out = cfg["out"] or f"datasets/{cfg['env']['name']}-{cfg['seed']}"
    return collect(_plain(cfg["env"]), out, cfg["episodes"], cfg["steps_per_episode"], policy, seed=cfg["seed"],
                   workers=cfg["workers"], episodes_per_shard=cfg["episodes_per_shard"], progress=cfg["progress"])
