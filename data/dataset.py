"""Windowed trajectory datasets over collected episodes, read lazily from disk."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torch.utils.data._utils.collate import default_collate

from data.storage import MANIFEST_NAME, ArrayFile, DatasetError, load_manifest, verify_shards

# Frames at least this large are read one by one; smaller ones as one read of the whole window span.
_FRAME_READ_BYTES = 4096
# Open files per process; each shard array is one file. Bounded by the soft limit on descriptors.
try:
    import resource

    _MAX_OPEN_FILES = max(8, min(4096, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 4))
except (ImportError, ValueError, OSError):
    _MAX_OPEN_FILES = 256


def normalize_actions(actions: np.ndarray, low, high) -> np.ndarray:
    """Map actions from the env's box [low, high] to [-1, 1], the range the model and planners use."""
    low, high = np.asarray(low, np.float32), np.asarray(high, np.float32)
    return (2.0 * (actions - low) / (high - low) - 1.0).astype(np.float32)


class EpisodeStore:
    """The episodes of a verified dataset, read from disk on demand.

    Only the file layout is held in memory, so memory does not grow with the number of episodes.
    Files are opened lazily by each process that reads (DataLoader workers, DDP ranks) and are never
    pickled. Windows are read with ``os.preadv`` at computed offsets: a read touches only the frames
    it returns, and nothing stays mapped (a memory map would count every page it faults in, and the
    kernel's 64 KiB fault-around, as this process's memory: BENCHMARKS.md, "Data loading").
    """

    def __init__(self, path, manifest: dict, shards: dict[str, dict[str, ArrayFile]], obs_type: str):
        self.path, self.manifest, self.obs_type = Path(path), manifest, obs_type
        names = sorted(shards)
        self._files = [shards[name] for name in names]  # by shard position: array name -> ArrayFile
        sizes = []
        for name in names:
            first, last = manifest["shards"][name]["episodes"]
            if first != sum(sizes) or last <= first:
                raise DatasetError(
                    f"{self.path / MANIFEST_NAME}: shard {name} holds episodes [{first}, {last}), but the shards "
                    f"before it end at episode {sum(sizes)}; the manifest was edited: recollect the dataset"
                )
            sizes.append(last - first)
        self._shard_of = np.repeat(np.arange(len(names)), sizes)  # (E,) shard position of each episode
        self._row = np.concatenate([np.arange(size) for size in sizes]) if sizes else np.zeros(0, np.int64)  # (E,)
        action = manifest["action"]
        self._low, self._high = action["low"], action["high"]
        self._fds: OrderedDict[str, int] = OrderedDict()  # path -> descriptor, least recently used first
        self._pid = os.getpid()

    # ------------------------------------------------------------------------------------- shapes
    @property
    def num_episodes(self) -> int:
        return len(self._row)

    @property
    def steps_per_episode(self) -> int:
        return int(self.manifest["steps_per_episode"])

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return tuple(self.manifest["observations"][self.obs_type])

    @property
    def obs_dtype(self) -> np.dtype:
        return np.dtype(np.uint8) if self.obs_type == "pixels" else np.dtype(np.float32)

    @property
    def action_size(self) -> int:
        """The env's action size (one env step, before frameskip)."""
        return int(self.manifest["action"]["dim"])

    @property
    def physics_size(self) -> int:
        return int(self.manifest["physics_size"])

    @property
    def position_size(self) -> int:
        return int(self.manifest["position_size"])

    # -------------------------------------------------------------------------------------- reads
    def read_windows(self, episodes, starts, num_frames: int, frameskip: int = 1) -> dict[str, np.ndarray]:
        """Windows of ``num_frames`` frames ``frameskip`` steps apart, from step ``starts[b]`` of ``episodes[b]``.

        Returns obs (B, L, *obs_shape), actions (B, L-1, frameskip*A) in [-1, 1], physics (B, L, P)
        and position (B, L, C), where B = len(episodes) and L = num_frames.
        """
        episodes, starts = np.asarray(episodes, np.int64), np.asarray(starts, np.int64)
        count, span = len(episodes), (num_frames - 1) * frameskip
        if count and (episodes.min() < 0 or episodes.max() >= self.num_episodes
                      or starts.min() < 0 or starts.max() + span > self.steps_per_episode):
            raise IndexError(f"window outside the dataset's {self.num_episodes} episodes of {self.steps_per_episode} steps")
        obs = np.empty((count, num_frames, *self.obs_shape), self.obs_dtype)
        physics = np.empty((count, num_frames, self.physics_size), np.float32)
        position = np.empty((count, num_frames, self.position_size), np.float32)
        actions = np.empty((count, span, self.action_size), np.float32)
        for b, (shard, row, start) in enumerate(zip(self._shard_of[episodes].tolist(), self._row[episodes].tolist(),
                                                    starts.tolist())):
            files = self._files[shard]
            self._read_frames(files[self.obs_type], row, start, frameskip, obs[b])
            self._read_frames(files["physics"], row, start, frameskip, physics[b])
            self._read_frames(files["position"], row, start, frameskip, position[b])
            self._read(files["action"], row, start, actions[b])
        actions = normalize_actions(actions, self._low, self._high)  # (B, span, A)
        return {"obs": obs, "actions": actions.reshape(count, num_frames - 1, -1), "physics": physics,
                "position": position}

    def episode(self, index: int) -> dict[str, np.ndarray]:
        """All frames and actions of one episode: obs (T+1, ...), actions (T, A), physics, position."""
        window = self.read_windows([index], [0], self.steps_per_episode + 1, 1)
        return {key: value[0] for key, value in window.items()}

    def _read_frames(self, array: ArrayFile, row: int, start: int, step: int, out: np.ndarray) -> None:
        """Frames ``start, start + step, ...`` of one episode into ``out`` (L, *item)."""
        if array.item_bytes * step >= _FRAME_READ_BYTES:  # pixels: one read per frame, nothing in between
            for i in range(len(out)):
                self._read(array, row, start + i * step, out[i])
        else:  # small vectors: one read of the whole span is cheaper than L reads
            span = np.empty(((len(out) - 1) * step + 1, *out.shape[1:]), out.dtype)
            self._read(array, row, start, span)
            out[...] = span[::step]

    def _read(self, array: ArrayFile, row: int, step: int, out: np.ndarray) -> None:
        """Fill ``out`` with consecutive time steps of one episode from ``step`` on, in one positional read."""
        offset = array.offset + (row * array.shape[1] + step) * array.item_bytes
        if os.preadv(self._descriptor(array.path), [out], offset) != out.nbytes:
            raise DatasetError(f"shard file {array.path} ended early: it was truncated after it was verified; "
                               f"delete it and rerun the same collect command to recollect it")

    def _descriptor(self, path: str) -> int:
        """A read-only descriptor of ``path`` for this process, opened on first use."""
        if self._pid != os.getpid():  # a forked DataLoader worker: do not share the parent's descriptors
            self._fds, self._pid = OrderedDict(), os.getpid()
        fd = self._fds.get(path)
        if fd is None:
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except FileNotFoundError as error:
                raise DatasetError(f"shard file {path} disappeared after the dataset was verified; "
                                   f"rerun the same collect command to recollect it") from error
            self._fds[path] = fd
            if len(self._fds) > _MAX_OPEN_FILES:
                os.close(self._fds.popitem(last=False)[1])
        else:
            self._fds.move_to_end(path)
        return fd

    def close(self) -> None:
        """Close this process's files; later reads reopen them."""
        if self._pid == os.getpid():
            for fd in self._fds.values():
                os.close(fd)
        self._fds = OrderedDict()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to clean
            pass

    def __getstate__(self) -> dict:
        """Pickle the layout only: descriptors mean nothing in another process (spawned workers)."""
        state = dict(self.__dict__)
        state["_fds"], state["_pid"] = OrderedDict(), None
        return state


def load_episodes(path: str | Path, obs_type: str) -> EpisodeStore:
    """Open the dataset at ``path`` for reading ``obs_type`` windows, after checking every shard file."""
    manifest = load_manifest(path)
    dropped = manifest.get("dropped_observations", {})
    if obs_type in dropped:
        raise DatasetError(
            f"dataset {path} has no '{obs_type}' observations: they were dropped when it was converted from "
            f"format 1 ({dropped[obs_type]}); recollect with scripts/collect.py env={manifest['env'].get('name')} "
            f"to train with data.obs_type={obs_type}"
        )
    if obs_type not in manifest["observations"]:
        raise DatasetError(
            f"dataset {path} has observations {sorted(manifest['observations'])}, not '{obs_type}'; "
            f"collect with env.obs_type={obs_type} or train with data.obs_type="
            f"{sorted(manifest['observations'])[0]}"
        )
    finished = sum(last - first for first, last in (record["episodes"] for record in manifest["shards"].values()))
    if finished < manifest["episodes"]:
        raise DatasetError(
            f"dataset {path} is incomplete: {finished} of {manifest['episodes']} episodes were collected "
            f"(the collection was interrupted); rerun the same collect command to finish it"
        )
    return EpisodeStore(path, manifest, verify_shards(path, manifest), obs_type)


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


class WindowBatch(Sequence):
    """Windows read together, already stacked into batch tensors (B, ...).

    ``collate_windows`` passes the tensors on without copying; any other collate function (e.g.
    PyTorch's default) sees an ordinary sequence of per-window dicts.
    """

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors["obs"])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return {key: value[index] for key, value in self.tensors.items()}


def collate_windows(batch):
    """DataLoader ``collate_fn``: a ``WindowBatch`` is a batch already; anything else is collated as usual."""
    return batch.tensors if isinstance(batch, WindowBatch) else default_collate(batch)


class TrajectoryWindowDataset(Dataset):
    """Windows of ``num_frames`` observations spaced ``frameskip`` env steps apart.

    Item ``i`` is a dict:
        obs      (L, *obs_shape)   uint8 pixels or float32 states
        actions  (L-1, A*frameskip) the actions between consecutive frames, concatenated over the
                                    skipped steps, so one model step covers ``frameskip`` env steps
        physics  (L, P)            ground-truth physics state of each frame
        position (L, C)            ground-truth goal coordinates of each frame (fingertip, mass)

    A DataLoader fetches a whole batch with ``__getitems__``, one read per frame straight into the
    batch tensors; use ``collate_fn=collate_windows`` to skip re-stacking them.
    """

    def __init__(self, episodes: EpisodeStore, episode_indices, num_frames: int, frameskip: int = 1):
        if num_frames < 2 or frameskip < 1:
            raise ValueError(f"need num_frames >= 2 and frameskip >= 1; got {num_frames}, {frameskip}")
        span = (num_frames - 1) * frameskip
        if span > episodes.steps_per_episode:
            raise ValueError(
                f"a window of {num_frames} frames with frameskip {frameskip} spans {span} steps, longer than the "
                f"dataset's {episodes.steps_per_episode}-step episodes; shorten the window or collect longer episodes"
            )
        self.episodes, self.num_frames, self.frameskip = episodes, num_frames, frameskip
        self.episode_ids = np.asarray(episode_indices, dtype=np.int64)  # (n,)
        self.starts_per_episode = episodes.steps_per_episode - span + 1
        # Window i is (episode_ids[i // starts_per_episode], i % starts_per_episode): computed, not
        # stored, so the index costs 8 bytes per episode rather than 16 per window.

    def __len__(self) -> int:
        return len(self.episode_ids) * self.starts_per_episode

    @property
    def index(self) -> np.ndarray:
        """(num_windows, 2): episode index and first step of every window, in item order."""
        return np.stack(self._locate(np.arange(len(self))), -1)

    def _locate(self, items) -> tuple[np.ndarray, np.ndarray]:
        items = np.asarray(items, np.int64)
        if items.size and (items.min() < -len(self) or items.max() >= len(self)):
            raise IndexError(f"window index out of range for {len(self)} windows")
        items = items % max(len(self), 1)
        return self.episode_ids[items // self.starts_per_episode], items % self.starts_per_episode

    def __getitems__(self, items) -> WindowBatch:
        episodes, starts = self._locate(items)
        arrays = self.episodes.read_windows(episodes, starts, self.num_frames, self.frameskip)
        return WindowBatch({key: torch.from_numpy(value) for key, value in arrays.items()})

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([item])[0]
