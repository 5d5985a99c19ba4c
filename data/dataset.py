"""Windowed trajectory datasets over collected episodes, read lazily from disk."""

from __future__ import annotations

import json
import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from jepa_wm.data.actions import to_model_range
from jepa_wm.data.storage import MANIFEST_NAME, ArrayFile, DatasetError, load_manifest, verify_shards
from jepa_wm.errors import ConfigError
from torch.utils.data import Dataset, get_worker_info
from torch.utils.data._utils.collate import default_collate

# Frames at least this large are read one by one; smaller ones as one read of the whole window span.
_FRAME_READ_BYTES = 4096
# Open files per process (4 per shard: obs, action, physics, position), well below the descriptor limit.
try:
    import resource

    _MAX_OPEN_FILES = max(8, min(4096, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 4))
except (ImportError, ValueError, OSError):
    _MAX_OPEN_FILES = 256


class EpisodeStore:
    """The episodes of a verified dataset, read from disk on demand.

    Only the file layout is held in memory, so memory does not grow with the number of episodes.
    Files are opened lazily by each process that reads (DataLoader workers, DDP ranks) and are never
    pickled. Windows are read with ``os.preadv`` at computed offsets: a read touches only the frames
    it returns, and nothing stays mapped (a memory map would count every page it faults in, and the
    kernel's 64 KiB fault-around, as this process's memory: BENCHMARKS.md, "Data loading").
    """

    def __init__(self, parts: Sequence[tuple[Path, dict, dict[str, dict[str, ArrayFile]]]], obs_type: str):
        """``parts``: (directory, manifest, verified shards) of each dataset, in order (``load_episodes`` checks
        that they hold episodes of one task); their episodes are numbered one after another."""
        self.paths = tuple(Path(path) for path, _, _ in parts)
        self.manifests = tuple(manifest for _, manifest, _ in parts)
        self.manifest, self.obs_type = parts[0][1], obs_type  # the task's: every part's agree (load_episodes)
        self._keys = (obs_type, "action", "physics", "position")  # the arrays a window needs, in this order
        files, sizes = [], []
        for path, manifest, shards in parts:
            part_sizes = []
            for name in sorted(shards):
                first, last = manifest["shards"][name]["episodes"]
                if first != sum(part_sizes) or last <= first:
                    raise DatasetError(
                        f"{Path(path) / MANIFEST_NAME}: shard {name} holds episodes [{first}, {last}), but the shards "
                        f"before it end at episode {sum(part_sizes)}; the manifest was edited: recollect the dataset"
                    )
                part_sizes.append(last - first)
                files.append([shards[name][key] for key in self._keys])
            sizes += part_sizes
        self._paths = [tuple(file.path for file in row) for row in files]  # by shard: the 4 file paths
        self._offsets = np.array([[file.offset for file in row] for row in files], np.int64).reshape(-1, 4)  # (S, 4)
        # Episodes of every shard have the same shapes (checked against the manifests, which agree), so these are shared:
        self._step_bytes = np.array([file.item_bytes for file in files[0]], np.int64) if files else np.zeros(4, np.int64)
        self._row_bytes = self._step_bytes * np.array([file.shape[1] for file in files[0]] if files else [0] * 4)
        self._shard_of = np.repeat(np.arange(len(files)), sizes)  # (E,) shard position of each episode
        self._row = np.concatenate([np.arange(size) for size in sizes]) if sizes else np.zeros(0, np.int64)  # (E,)
        action = self.manifest["action"]
        self._low, self._high = action["low"], action["high"]
        self._fds: OrderedDict[int, tuple[int, ...]] = OrderedDict()  # shard -> descriptors, least recent first
        self._fd_paths: dict[int, str] = {}  # descriptor -> path, for error messages
        self._pid = os.getpid()

    @property
    def path(self) -> str:
        """The dataset's directory, or its directories joined by ' + ': what messages name."""
        return " + ".join(str(path) for path in self.paths)

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

    def window_shapes(self, count: int, num_frames: int, frameskip: int = 1) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Shape and dtype of each array of ``count`` windows: what ``read_windows`` fills."""
        return {
            "obs": ((count, num_frames, *self.obs_shape), self.obs_dtype),
            "actions": ((count, num_frames - 1, frameskip * self.action_size), np.dtype(np.float32)),
            "physics": ((count, num_frames, self.physics_size), np.dtype(np.float32)),
            "position": ((count, num_frames, self.position_size), np.dtype(np.float32)),
        }

    # -------------------------------------------------------------------------------------- reads
    def read_windows(self, episodes, starts, num_frames: int, frameskip: int = 1,
                     out: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Windows of ``num_frames`` frames ``frameskip`` steps apart, from step ``starts[b]`` of ``episodes[b]``.

        Returns (or fills ``out``, shaped as ``window_shapes`` says) obs (B, L, *obs_shape), actions
        (B, L-1, frameskip*A) in [-1, 1], physics (B, L, P) and position (B, L, C), where
        B = len(episodes) and L = num_frames. Large frames (pixels) are read one by one straight into
        the batch; small vectors as one read of each window's whole span, subsampled afterwards.
        """
        episodes, starts = np.asarray(episodes, np.int64), np.asarray(starts, np.int64)
        count, span = len(episodes), (num_frames - 1) * frameskip
        if count and (episodes.min() < 0 or episodes.max() >= self.num_episodes
                      or starts.min() < 0 or starts.max() + span > self.steps_per_episode):
            raise IndexError(f"window outside the dataset's {self.num_episodes} episodes of {self.steps_per_episode} steps")
        if out is None:
            shapes = self.window_shapes(count, num_frames, frameskip)
            out = {key: np.empty(shape, dtype) for key, (shape, dtype) in shapes.items()}
        obs, actions = out["obs"], out["actions"].reshape(count, span, self.action_size)  # a view: A per env step
        # (B, span+1, ...) whole spans of the small per-frame arrays, subsampled into ``out`` below; without
        # frameskip a span is the window itself
        frame_by_frame = frameskip > 1 and self.obs_dtype.itemsize * math.prod(self.obs_shape) * frameskip >= _FRAME_READ_BYTES
        keys = ("physics", "position") if frame_by_frame else ("obs", "physics", "position")
        spans = {key: out[key] if frameskip == 1 else np.empty((count, span + 1, *out[key].shape[2:]), out[key].dtype)
                 for key in keys}
        shards, rows = self._shard_of[episodes], self._row[episodes]  # (B,)
        descriptors = self._batch_descriptors(shards)  # (B, 4): obs, action, physics, position files
        # (B, 4) file position of each window's first step in each of its four files
        first = self._offsets[shards] + rows[:, None] * self._row_bytes + starts[:, None] * self._step_bytes
        if frame_by_frame:  # (B*L,) one read per frame, straight into the batch
            frames = first[:, :1] + np.arange(num_frames) * frameskip * self._step_bytes[0]  # (B, L)
            self._read_rows(np.repeat(descriptors[:, 0], num_frames), obs.reshape(count * num_frames, -1), frames.ravel())
        else:
            self._read_rows(descriptors[:, 0], spans["obs"].reshape(count, -1), first[:, 0])
        self._read_rows(descriptors[:, 1], actions.reshape(count, -1), first[:, 1])
        self._read_rows(descriptors[:, 2], spans["physics"].reshape(count, -1), first[:, 2])
        self._read_rows(descriptors[:, 3], spans["position"].reshape(count, -1), first[:, 3])
        if frameskip > 1:
            for key, values in spans.items():
                out[key][...] = values[:, ::frameskip]
        to_model_range(actions, self._low, self._high, out=actions)
        return out

    def episode(self, index: int) -> dict[str, np.ndarray]:
        """All frames and actions of one episode: obs (T+1, ...), actions (T, A), physics, position."""
        window = self.read_windows([index], [0], self.steps_per_episode + 1, 1)
        return {key: value[0] for key, value in window.items()}

    def _read_rows(self, descriptors: np.ndarray, buffers: np.ndarray, positions: np.ndarray) -> None:
        """Fill each row of ``buffers`` (N, bytes) from its descriptor and file position: N positional reads."""
        preadv, size = os.preadv, buffers.shape[1] * buffers.itemsize
        for fd, buffer, position in zip(descriptors.tolist(), buffers, positions.tolist()):
            if preadv(fd, [buffer], position) != size:
                raise DatasetError(f"shard file {self._fd_paths.get(fd)} ended early: it was truncated after it was "
                                   f"verified; delete it and rerun the same collect command to recollect it")

    def _batch_descriptors(self, shards: np.ndarray) -> np.ndarray:
        """(B, 4) descriptors of the files each window needs, opened by this process on first use."""
        if self._pid != os.getpid():  # a forked DataLoader worker: do not share the parent's descriptors
            self._fds, self._fd_paths, self._pid = OrderedDict(), {}, os.getpid()
        unique, inverse = np.unique(shards, return_inverse=True)
        table = np.array([self._descriptors(shard) for shard in unique.tolist()], np.int64).reshape(-1, 4)
        while len(self._fds) * len(self._keys) > _MAX_OPEN_FILES and len(self._fds) > len(unique):
            for fd in self._fds.popitem(last=False)[1]:  # least recently used, never one of this batch
                os.close(fd)
                del self._fd_paths[fd]
        return table[inverse]

    def _descriptors(self, shard: int) -> tuple[int, ...]:
        fds = self._fds.get(shard)
        if fds is not None:
            self._fds.move_to_end(shard)
            return fds
        opened = []
        try:
            for path in self._paths[shard]:
                opened.append(os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)))
        except FileNotFoundError as error:
            for fd in opened:
                os.close(fd)
            raise DatasetError(f"shard file {error.filename} disappeared after the dataset was verified; "
                               f"rerun the same collect command to recollect it") from error
        self._fd_paths.update(zip(opened, self._paths[shard]))
        self._fds[shard] = fds = tuple(opened)
        return fds

    def close(self) -> None:
        """Close this process's files; later reads reopen them."""
        if self._pid == os.getpid():
            for fds in self._fds.values():
                for fd in fds:
                    os.close(fd)
        self._fds, self._fd_paths = OrderedDict(), {}

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to clean
            pass

    def __getstate__(self) -> dict:
        """Pickle the layout only: descriptors mean nothing in another process (spawned workers)."""
        state = dict(self.__dict__)
        state["_fds"], state["_fd_paths"], state["_pid"] = OrderedDict(), {}, None
        return state


def dataset_paths(path) -> list[Path]:
    """``data.path`` as a list of dataset directories: one path, or a list of them (``data.path=[a,b]``)."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or not all(isinstance(item, (str, Path)) and str(item) for item in paths):
        raise ConfigError(f"data.path={path!r} names no dataset; pass a dataset directory or a list of them "
                          f"(data.path=[datasets/a,datasets/b])")
    return [Path(item) for item in paths]


# What two datasets must share for their episodes to train one model: the task, its actions, the observations,
# the episode length and the simulator's state layout. The collection seed and policy may differ.
SAME_TASK_KEYS = ("env", "action", "action_repeat", "steps_per_episode", "physics_size", "position_size")


def load_episodes(path, obs_type: str) -> EpisodeStore:
    """Open the dataset at ``path`` (or the datasets of a list, their episodes one after another) for reading
    ``obs_type`` windows, after checking every shard file and that the datasets hold distinct episodes of one
    task."""
    parts = [(directory, _readable_manifest(directory, obs_type)) for directory in dataset_paths(path)]
    (first_path, first), names = parts[0], {}
    for other_path, other in parts[1:]:
        differing = [key for key in SAME_TASK_KEYS if other.get(key) != first.get(key)]
        if other["observations"].get(obs_type) != first["observations"].get(obs_type):
            differing.append(f"observations.{obs_type}")
        if differing:
            raise DatasetError(f"datasets {first_path} and {other_path} hold episodes of different tasks or formats "
                               f"({', '.join(differing)} differ); train on datasets collected with one env config")
    for directory, manifest in parts:
        # Episode i of a collection depends on (seed, i) and the policy alone: two datasets of one seed and policy
        # share their first episodes, which would sit on both sides of the train/val split.
        origin = json.dumps([manifest.get("seed"), manifest.get("policy"), manifest.get("header_sha256")
                             if manifest.get("seed") is None else None], sort_keys=True)
        if origin in names:
            raise DatasetError(f"datasets {names[origin]} and {directory} were collected with the same seed and policy, so "
                               f"they share their first episodes; collect the extra data with another seed= "
                               f"(jepa-wm collect seed=N out=...)")
        names[origin] = directory
    return EpisodeStore([(directory, manifest, verify_shards(directory, manifest)) for directory, manifest in parts],
                        obs_type)


def _readable_manifest(path: Path, obs_type: str) -> dict:
    """The manifest of a complete dataset at ``path`` that holds ``obs_type`` observations."""
    manifest = load_manifest(path)
    dropped = manifest.get("dropped_observations", {})
    if obs_type in dropped:
        raise DatasetError(
            f"dataset {path} has no '{obs_type}' observations: they were dropped when it was converted from "
            f"format 1 ({dropped[obs_type]}); recollect with jepa-wm collect env={manifest['env'].get('name')} "
            f"to train with model.obs_type={obs_type}"
        )
    if obs_type not in manifest["observations"]:
        raise DatasetError(
            f"dataset {path} has observations {sorted(manifest['observations'])}, not '{obs_type}'; "
            f"collect with env.obs_type={obs_type} or train with model.obs_type="
            f"{sorted(manifest['observations'])[0]} (model=pixels or model=state)"
        )
    finished = sum(last - first for first, last in (record["episodes"] for record in manifest["shards"].values()))
    if finished < manifest["episodes"]:
        raise DatasetError(
            f"dataset {path} is incomplete: {finished} of {manifest['episodes']} episodes were collected "
            f"(the collection was interrupted); rerun the same collect command to finish it"
        )
    return manifest


def split_episodes(num_episodes: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint train/val episode indices: windows of one episode never land on both sides."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1); got {val_fraction}")
    order = np.random.default_rng(seed).permutation(num_episodes)
    num_val = int(round(num_episodes * val_fraction))
    if val_fraction > 0 and num_val == 0 and num_episodes > 1:
        num_val = 1
    if num_val >= num_episodes:
        raise ConfigError(f"data.val_fraction={val_fraction} leaves no training episodes out of {num_episodes}; "
                          f"lower it, or collect more episodes")
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


def _batch_tensors(shapes: dict[str, tuple[tuple[int, ...], np.dtype]]) -> dict[str, torch.Tensor]:
    """Empty batch tensors. In a DataLoader worker they are views of one shared-memory buffer, so that
    handing the batch to the main process copies nothing and passes one buffer rather than four."""
    dtypes = {key: torch.from_numpy(np.empty(0, dtype)).dtype for key, (_, dtype) in shapes.items()}
    if get_worker_info() is None:
        return {key: torch.empty(shape, dtype=dtypes[key]) for key, (shape, _) in shapes.items()}
    starts, total = {}, 0
    for key, (shape, dtype) in shapes.items():
        starts[key] = total
        total += -(-math.prod(shape) * dtype.itemsize // 64) * 64  # 64-byte aligned, for every dtype
    buffer = torch.empty(total, dtype=torch.uint8).share_memory_()  # public API: no private storage calls
    return {key: buffer[starts[key] : starts[key] + math.prod(shape) * dtype.itemsize].view(dtypes[key]).view(shape)
            for key, (shape, dtype) in shapes.items()}


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
        shapes = self.episodes.window_shapes(len(episodes), self.num_frames, self.frameskip)
        tensors = _batch_tensors(shapes)
        self.episodes.read_windows(episodes, starts, self.num_frames, self.frameskip,
                                   out={key: tensor.numpy() for key, tensor in tensors.items()})
        return WindowBatch(tensors)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([item])[0]
