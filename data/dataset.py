"""Windowed trajectory datasets over collected episodes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from data.storage import DatasetError, load_manifest, read_shard


@dataclass
class Episodes:
    """All episodes of a dataset in memory, episode-major. Pixels stay uint8 until the model sees them."""

    observations: np.ndarray  # (E, T+1, *obs_shape)
    actions: np.ndarray  # (E, T, A), normalised to [-1, 1]
    physics: np.ndarray  # (E, T+1, P), ground-truth physics state
    position: np.ndarray  # (E, T+1, C), the coordinates goal success is measured on
    manifest: dict

    @property
    def num_episodes(self) -> int:
        return self.observations.shape[0]

    @property
    def steps_per_episode(self) -> int:
        return self.actions.shape[1]


def normalize_actions(actions: np.ndarray, low, high) -> np.ndarray:
    """Map actions from the env's box [low, high] to [-1, 1], the range the model and planners use."""
    low, high = np.asarray(low, np.float32), np.asarray(high, np.float32)
    return (2.0 * (actions - low) / (high - low) - 1.0).astype(np.float32)


def load_episodes(path: str | Path, obs_type: str) -> Episodes:
    """Load every finished shard of the dataset at ``path``, checking each against the manifest."""
    manifest = load_manifest(path)
    if obs_type not in manifest["observations"]:
        raise DatasetError(
            f"dataset {path} has observations {sorted(manifest['observations'])}, not '{obs_type}'; "
            f"collect with env.obs_type={obs_type} or train with data.obs_type="
            f"{sorted(manifest['observations'])[0]}"
        )
    names = sorted(manifest["shards"])
    finished = sum(last - first for first, last in (manifest["shards"][name]["episodes"] for name in names))
    if finished < manifest["episodes"]:
        raise DatasetError(
            f"dataset {path} is incomplete: {finished} of {manifest['episodes']} episodes were collected "
            f"(the collection was interrupted); rerun the same collect command to finish it"
        )
    shards = [read_shard(path, name, manifest) for name in names]
    action = manifest["action"]
    return Episodes(
        observations=np.concatenate([shard[obs_type] for shard in shards]),
        actions=normalize_actions(np.concatenate([shard["action"] for shard in shards]), action["low"], action["high"]),
        physics=np.concatenate([shard["physics"] for shard in shards]),
        position=np.concatenate([shard["position"] for shard in shards]),
        manifest=manifest,
    )


def split_episodes(num_episodes: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint train/val episode indices: windows of one episode never land on both sides."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1); got {val_fraction}")
    order = np.random.default_rng(seed).permutation(num_episodes)
    num_val = int(round(num_episodes * val_fraction))
    if val_fraction > 0 and num_val == 0 and num_episodes > 1:
        num_val = 1
    if num_val >= num_episodes:
        raise ValueError(f"val_fraction={val_fraction} leaves no training episodes out of {num_episodes}")
    return np.sort(order[num_val:]), np.sort(order[:num_val])


class TrajectoryWindowDataset(Dataset):
    """Windows of ``num_frames`` observations spaced ``frameskip`` env steps apart.

    Item ``i`` is a dict:
        obs      (L, *obs_shape)   uint8 pixels or float32 states
        actions  (L-1, A*frameskip) the actions between consecutive frames, concatenated over the
                                    skipped steps, so one model step covers ``frameskip`` env steps
        physics  (L, P)            ground-truth physics state of each frame
        position (L, C)            ground-truth goal coordinates of each frame (fingertip, mass)
    """

    def __init__(self, episodes: Episodes, episode_indices, num_frames: int, frameskip: int = 1):
        if num_frames < 2 or frameskip < 1:
            raise ValueError(f"need num_frames >= 2 and frameskip >= 1; got {num_frames}, {frameskip}")
        span = (num_frames - 1) * frameskip
        if span > episodes.steps_per_episode:
            raise ValueError(
                f"a window of {num_frames} frames with frameskip {frameskip} spans {span} steps, longer than the "
                f"dataset's {episodes.steps_per_episode}-step episodes; shorten the window or collect longer episodes"
            )
        self.episodes, self.num_frames, self.frameskip = episodes, num_frames, frameskip
        starts = np.arange(episodes.steps_per_episode - span + 1)
        episode_indices = np.asarray(episode_indices, dtype=np.int64)
        # (num_windows, 2): episode index, first step of the window
        self.index = np.stack(np.meshgrid(episode_indices, starts, indexing="ij"), -1).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        episode, start = self.index[item]
        steps = start + self.frameskip * np.arange(self.num_frames)
        actions = self.episodes.actions[episode, start : steps[-1]]  # (span, A)
        actions = actions.reshape(self.num_frames - 1, -1)  # (L-1, frameskip*A)
        return {
            "obs": torch.from_numpy(self.episodes.observations[episode, steps]),
            "actions": torch.from_numpy(actions),
            "physics": torch.from_numpy(self.episodes.physics[episode, steps]),
            "position": torch.from_numpy(self.episodes.position[episode, steps]),
        }
