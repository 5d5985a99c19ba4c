"""On-disk episode datasets: ``.npz`` shards plus a JSON manifest, all written atomically.

Layout of a dataset directory::

    manifest.json        what was collected (env, specs, policy, seed, counts) and the finished shards
    shard-00000.npz      episodes [0, E): arrays with a leading episode axis, see SHARD_ARRAYS

A file is written to a temporary name in the same directory and renamed into place, so a killed
process leaves either the old file or the new one, never half of one. Shards are loaded with
``allow_pickle=False``: a dataset from a stranger cannot run code.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
TEMP_SUFFIX = ".partial"
_UMASK = os.umask(0o022)  # reading the umask means setting it; restored on the next line, at import
os.umask(_UMASK)

# Arrays of every shard: E episodes of T actions and T + 1 frames.
#   action   (E, T, A)       float32, raw env actions
#   state    (E, T+1, S)     float32, the task's flattened physics observation
#   physics  (E, T+1, P)     float32, full physics state (qpos, qvel, act): ground truth for probes
#   position (E, T+1, C)     float32, the coordinates success is measured on
#   pixels   (E, T+1, H, W, 3) uint8, only when the dataset has pixel observations
#   episode  (E,)            int64, global episode index
SHARD_ARRAYS = ("action", "state", "physics", "position", "episode")


class DatasetError(Exception):
    """A dataset file is missing, corrupt, or does not match its manifest."""


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.npz"


def _atomic_write(path: Path, write) -> None:
    """Call ``write(file_object)`` on a temporary file next to ``path``, then rename it into place."""
    path = Path(path)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(handle, "wb") as file:
            # mkstemp makes the file readable by its owner alone; give it what open() would (0o666
            # less the umask), so a dataset can be shared with other users like any other file.
            os.fchmod(file.fileno(), 0o666 & ~_UMASK)
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=2, sort_keys=True).encode()
    _atomic_write(path, lambda file: file.write(text))


def write_shard(path: Path, arrays: dict[str, np.ndarray]) -> str:
    """Write one shard atomically and return its sha256, which the manifest records."""
    _atomic_write(path, lambda file: np.savez_compressed(file, **arrays))
    return file_sha256(path)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_partial_files(directory: Path) -> int:
    """Delete temporaries left by a killed writer; returns how many there were."""
    leftovers = list(Path(directory).glob(f".*{TEMP_SUFFIX}"))
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
    return len(leftovers)


def load_manifest(directory: Path) -> dict[str, Any]:
    """Read ``manifest.json`` of a dataset, with errors that say what to do."""
    path = Path(directory) / MANIFEST_NAME
    if not Path(directory).is_dir():
        raise DatasetError(f"dataset directory {directory} does not exist; create it with scripts/collect.py out={directory}")
    if not path.is_file():
        raise DatasetError(f"{path} is missing: {directory} is not a jepa-wm dataset (run scripts/collect.py out={directory})")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path} is not valid JSON ({error}); the dataset manifest is corrupt") from error
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise DatasetError(f"{path} has format_version {version!r}; this code reads format_version {FORMAT_VERSION}")
    return manifest


def read_shard(directory: Path, name: str, manifest: dict[str, Any]) -> dict[str, np.ndarray]:
    """Load one shard and check it against the manifest: checksum, arrays, shapes."""
    path = Path(directory) / name
    record = manifest["shards"].get(name)
    if record is None:
        raise DatasetError(f"shard {path} is not listed as finished in {MANIFEST_NAME}; rerun the collection to finish it")
    if not path.is_file():
        raise DatasetError(f"shard {path} is listed in {MANIFEST_NAME} but missing; rerun the same collect command to recollect it")
    if file_sha256(path) != record["sha256"]:
        raise DatasetError(
            f"shard {path} is corrupt or was modified (sha256 differs from {MANIFEST_NAME}); "
            f"delete it and rerun the same collect command to recollect it"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as error:  # zip, zlib and format errors all mean the same thing here
        raise DatasetError(f"shard {path} cannot be read ({type(error).__name__}: {error}); delete it and recollect") from error
    _check_shard_shapes(path, arrays, record, manifest)
    return arrays


def _check_shard_shapes(path: Path, arrays: dict[str, np.ndarray], record: dict, manifest: dict) -> None:
    episodes = record["episodes"][1] - record["episodes"][0]
    steps = manifest["steps_per_episode"]
    expected = {
        "action": (episodes, steps, manifest["action"]["dim"]),
        "state": (episodes, steps + 1, *manifest["observations"]["state"]),
        "physics": (episodes, steps + 1, manifest["physics_size"]),
        "position": (episodes, steps + 1, manifest["position_size"]),
        "episode": (episodes,),
    }
    if "pixels" in manifest["observations"]:
        expected["pixels"] = (episodes, steps + 1, *manifest["observations"]["pixels"])
    for key, shape in expected.items():
        if key not in arrays:
            raise DatasetError(f"shard {path} has no '{key}' array (has: {', '.join(sorted(arrays))})")
        if tuple(arrays[key].shape) != tuple(shape):
            raise DatasetError(f"shard {path}: '{key}' has shape {tuple(arrays[key].shape)}, manifest says {tuple(shape)}")
