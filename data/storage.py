"""On-disk episode datasets (format 2): one uncompressed ``.npy`` file per shard array, a JSON manifest.

Layout of a dataset directory::

    manifest.json              what was collected (env, specs, policy, seed, counts), a sha256 of that
                               header, and the finished shards with the sha256 of each of their files
    shard-00000.action.npy     episodes [0, E) of shard 0, one file per array (see ARRAY_DTYPES)
    shard-00000.pixels.npy     ...
    verified.json              a cache: which shard files were hashed, by (size, mtime_ns, ctime_ns)

Why uncompressed ``.npy``: a training window is read straight from disk at computed offsets, touching
only its own frames, so memory does not grow with the dataset; chunked compressed files (HDF5) read
windows 10x+ slower, and whole compressed shards (format 1) must be decompressed into RAM
(BENCHMARKS.md, "Data loading"). The price is disk space: reacher's pixels compress ~30x.

Every file is written to a temporary name in the same directory and renamed into place, so a killed
process leaves either the old file or the new one, never half of one. Arrays are read with
``allow_pickle=False``: a dataset from a stranger cannot run code.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jepa_wm.files import atomic_write, file_sha256, remove_temporaries, write_json_atomic

FORMAT_VERSION = 2
MANIFEST_NAME = "manifest.json"
VERIFIED_NAME = "verified.json"

# Arrays of every shard: E episodes of T actions and T + 1 frames, each in its own .npy file.
#   action   (E, T, A)          float32, raw env actions
#   state    (E, T+1, S)        float32, the task's flattened physics observation
#   physics  (E, T+1, P)        float32, full physics state (qpos, qvel, act): ground truth for probes
#   position (E, T+1, C)        float32, the coordinates success is measured on
#   pixels   (E, T+1, H, W, 3)  uint8, only when the dataset has pixel observations
#   episode  (E,)               int64, global episode index
ARRAY_DTYPES = {
    "action": np.dtype(np.float32),
    "state": np.dtype(np.float32),
    "physics": np.dtype(np.float32),
    "position": np.dtype(np.float32),
    "pixels": np.dtype(np.uint8),
    "episode": np.dtype(np.int64),
}
# What collection writes before the shards; load_manifest insists on all of it.
HEADER_FIELDS = ("format_version", "env", "observations", "physics_size", "position_size", "action",
                 "action_repeat", "steps_per_episode", "policy", "seed", "episodes", "episodes_per_shard")
RECOLLECT = "delete it and rerun the same collect command to recollect it"


class DatasetError(Exception):
    """A dataset file is missing, corrupt, or does not match its manifest."""


# A shard's name as collection writes it. Names read from a file (a manifest, an HDF5 file's manifest) become
# file names inside the dataset directory, so they must be exactly this: never a path that leads elsewhere.
SHARD_NAME = re.compile(r"shard-[0-9]{5,9}")


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def check_shard_names(path: Path, names, suffix: str = "") -> None:
    """Refuse, naming the first offender, shard names that are not plain ``shard-NNNNN{suffix}`` names (e.g.
    ``../victim/shard-00000`` or an absolute path): reading, writing or deleting them would touch files outside
    the dataset."""
    for name in names:
        if not (isinstance(name, str) and name.endswith(suffix) and SHARD_NAME.fullmatch(name.removesuffix(suffix))):
            raise DatasetError(f"{path} lists a shard named {str(name)[:80]!r}; shard names are shard-NNNNN{suffix} "
                               f"inside the dataset directory: the manifest was damaged or not written by jepa-wm")


def shard_file(shard: str, key: str) -> str:
    """File name of one array of a shard, e.g. ``shard-00003.pixels.npy``: the one place a shard's name and an
    array's name become a file name, so neither may be anything but a plain name of this dataset."""
    if not (isinstance(shard, str) and SHARD_NAME.fullmatch(shard)) or key not in ARRAY_DTYPES:
        raise DatasetError(f"shard {str(shard)[:80]!r} array {str(key)[:40]!r} is not a file name of a jepa-wm dataset "
                           f"(shard-NNNNN and one of {', '.join(ARRAY_DTYPES)}); the manifest was damaged")
    return f"{shard}.{key}.npy"


# ----------------------------------------------------------------------------------------- writing
def write_array(path: Path, array: np.ndarray) -> str:
    """Write one ``.npy`` file atomically and return its sha256."""
    array = np.ascontiguousarray(array)
    atomic_write(path, lambda file: np.lib.format.write_array(file, array, allow_pickle=False))
    return file_sha256(path)


def write_shard(directory: Path, shard: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Write every array of one shard, each atomically; returns the shard's manifest record.

    The record is what marks the shard finished, so the caller writes it to the manifest only after
    this returns: a kill between two files leaves an unlisted shard that a rerun rewrites.
    """
    files = {}
    for key in sorted(arrays):
        if arrays[key].dtype != ARRAY_DTYPES[key]:
            raise ValueError(f"shard array '{key}' must be {ARRAY_DTYPES[key]}, got {arrays[key].dtype}")
        files[key] = write_array(Path(directory) / shard_file(shard, key), arrays[key])
    episodes = arrays["episode"]
    return {"episodes": [int(episodes[0]), int(episodes[-1]) + 1], "files": files}


# What a dataset directory may hold besides the user's nothing: the names ``atomic_write`` targets there.
DATASET_FILES = (MANIFEST_NAME, VERIFIED_NAME, "convert-progress.json", "shard-*.npy")


def remove_partial_files(directory: Path) -> int:
    """Delete the temporaries a killed writer left for dataset files; returns how many. Other files stay."""
    return remove_temporaries(directory, DATASET_FILES)


# ---------------------------------------------------------------------------------------- manifest
def header_sha256(manifest: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of everything but the shard list: what defines the dataset."""
    header = {key: value for key, value in manifest.items() if key not in ("shards", "header_sha256")}
    return hashlib.sha256(json.dumps(header, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def shard_seal(manifest: dict[str, Any], shard: str, record: dict[str, Any]) -> str:
    """sha256 binding a shard's record (its episodes and file checksums) to its name and to this dataset's
    header: a record copied in from another dataset, or moved to another shard name, no longer matches."""
    content = {"header_sha256": manifest["header_sha256"], "shard": shard, "episodes": record.get("episodes"),
               "files": record.get("files")}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def sealed(manifest: dict[str, Any], shard: str, record: dict[str, Any]) -> dict[str, Any]:
    """The record with its seal, as the manifest stores it."""
    return {**record, "seal": shard_seal(manifest, shard, record)}


def check_seals(path: Path, manifest: dict[str, Any]) -> None:
    """Every shard record carries the seal of this dataset (manifests written before seals carry none)."""
    records = {name: record for name, record in manifest["shards"].items() if isinstance(record, dict)}
    with_seal = [name for name, record in records.items() if "seal" in record]
    if not with_seal:
        return
    for name, record in sorted(records.items()):
        if record.get("seal") != shard_seal(manifest, name, record):
            raise DatasetError(f"{path} lists shard {name} with a record that does not belong to this dataset (its seal "
                               f"does not match: copied in from another dataset, or edited); remove that shard's "
                               f"record and files and rerun the same collect command to recollect it")


def new_manifest(header: dict[str, Any]) -> dict[str, Any]:
    """A manifest with no finished shards yet, sealed with the sha256 of its header."""
    manifest = {**header, "shards": {}}
    manifest["header_sha256"] = header_sha256(manifest)
    return manifest


def convert_command(directory) -> str:
    return f"jepa-wm convert path={directory}"


def read_manifest_json(directory: Path) -> dict[str, Any]:
    """The raw manifest of a dataset directory of any format, with errors that say what to do."""
    directory = Path(directory)
    path = directory / MANIFEST_NAME
    if directory.is_file():
        raise DatasetError(f"data.path {directory} is a file; pass the dataset directory written by jepa-wm collect")
    if not directory.is_dir():
        raise DatasetError(f"dataset directory {directory} does not exist; create it with jepa-wm collect out={directory}")
    if not path.is_file():
        raise DatasetError(f"{path} is missing: {directory} is not a jepa-wm dataset (run jepa-wm collect out={directory})")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path} is not valid JSON ({error}); the dataset manifest is corrupt") from error
    if not isinstance(manifest, dict):
        raise DatasetError(f"{path} is not a JSON object; the dataset manifest is corrupt")
    return manifest


def require_fields(path: Path, manifest: dict[str, Any], fields) -> None:
    missing = [field for field in fields if field not in manifest]
    missing += [f"action.{key}" for key in ("dim", "low", "high")
                if "action" in manifest and key not in (manifest["action"] or {})]
    if missing:
        raise DatasetError(
            f"{path} lacks required field(s) {', '.join(missing)}: it was damaged or not written by "
            f"jepa-wm collect; recollect the dataset with jepa-wm collect"
        )


def load_manifest(directory: Path) -> dict[str, Any]:
    """Read and check ``manifest.json`` of a format-2 dataset: version, required fields, header seal."""
    manifest = read_manifest_json(directory)
    path = Path(directory) / MANIFEST_NAME
    version = manifest.get("format_version")
    if version == 1:
        raise DatasetError(f"{directory} is a format-1 dataset; convert it with: {convert_command(directory)}")
    if version != FORMAT_VERSION:
        raise DatasetError(f"{path} has format_version {version!r}; this code reads format_version {FORMAT_VERSION}")
    require_fields(path, manifest, (*HEADER_FIELDS, "shards", "header_sha256"))
    check_header_types(path, manifest)
    check_shard_names(path, manifest["shards"])
    if header_sha256(manifest) != manifest["header_sha256"]:
        raise DatasetError(
            f"{path} was edited after collection (its header no longer matches header_sha256); restore the "
            f"original manifest, or recollect the dataset with jepa-wm collect"
        )
    check_seals(path, manifest)
    return manifest


# The JSON type of every header field a reader relies on (a manifest edited by hand and resealed, or written
# by another tool, is refused with the field named instead of failing deep inside a reader).
HEADER_TYPES = {"format_version": int, "env": dict, "observations": dict, "physics_size": int, "position_size": int,
                "action": dict, "action_repeat": int, "steps_per_episode": int, "policy": dict, "seed": int,
                "episodes": int, "episodes_per_shard": int, "shards": dict, "header_sha256": str}


def check_header_types(path: Path, manifest: dict[str, Any], fields=tuple(HEADER_TYPES)) -> None:
    """Refuse, naming the field, a manifest whose ``fields`` (and action bounds, observation shapes) have the
    wrong JSON type."""
    def bad(field: str, expected: str) -> DatasetError:
        return DatasetError(f"{path}: field {field} is {manifest_value(field)!r}, not {expected}: the manifest was "
                            f"damaged or not written by jepa-wm collect; recollect the dataset")

    def manifest_value(field: str):
        value = manifest
        for part in field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value

    for field in fields:
        kind, value = HEADER_TYPES[field], manifest.get(field)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise bad(field, kind.__name__)
        if kind is int and value < (0 if field == "seed" else 1):
            raise bad(field, "a positive integer")
    action = manifest["action"]
    if not isinstance(action.get("dim"), int) or action["dim"] < 1:
        raise bad("action.dim", "a positive integer")
    for bound in ("low", "high"):
        values = action.get(bound)
        if not (isinstance(values, list) and len(values) == action["dim"]
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
            raise bad(f"action.{bound}", f"a list of {action['dim']} numbers")
    for key, shape in manifest["observations"].items():
        if key not in ARRAY_DTYPES or not (isinstance(shape, list) and all(isinstance(n, int) and n > 0 for n in shape)):
            raise bad(f"observations.{key}", "a known observation with a list of positive sizes")


# -------------------------------------------------------------------------------------- shard files
@dataclass(frozen=True)
class ArrayFile:
    """Where one shard array lives: a ``.npy`` file whose C-order data start at ``offset``."""

    path: str
    offset: int
    shape: tuple[int, ...]  # (E, T or T+1, *item) or (E,)
    dtype: np.dtype

    @property
    def item_bytes(self) -> int:
        """Bytes of one time step of one episode (one frame, one action), or of one entry of (E,)."""
        return int(np.prod(self.shape[2:], dtype=np.int64)) * self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def expected_arrays(manifest: dict[str, Any], record: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array of one shard, from the manifest."""
    episodes = record["episodes"][1] - record["episodes"][0]
    steps = manifest["steps_per_episode"]
    expected = {
        "action": (episodes, steps, manifest["action"]["dim"]),
        "physics": (episodes, steps + 1, manifest["physics_size"]),
        "position": (episodes, steps + 1, manifest["position_size"]),
        "episode": (episodes,),
    }
    for key, shape in manifest["observations"].items():
        expected[key] = (episodes, steps + 1, *shape)
    return {key: (tuple(int(size) for size in shape), ARRAY_DTYPES[key]) for key, shape in expected.items()}


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def read_array_header(path: Path) -> ArrayFile:
    """Shape, dtype and data offset of a ``.npy`` file, from its header alone."""
    try:
        with open(path, "rb") as file:
            version = np.lib.format.read_magic(file)
            shape, fortran_order, dtype = _HEADER_READERS[version](file)
            offset = file.tell()
    except Exception as error:  # bad magic, unknown version, unparsable header: all mean the same here
        raise DatasetError(f"shard file {path} cannot be read ({type(error).__name__}: {error}); {RECOLLECT}") from error
    if fortran_order:
        raise DatasetError(f"shard file {path} is stored in Fortran order, which format 2 never writes; {RECOLLECT}")
    return ArrayFile(str(path), offset, tuple(shape), np.dtype(dtype))


def check_array_file(path: Path, key: str, shape, dtype) -> ArrayFile:
    """The checks every load makes, from headers and sizes only: presence, dtype, shape, length."""
    if not path.is_file():
        raise DatasetError(f"shard file {path} is listed in {MANIFEST_NAME} but missing; "
                           f"rerun the same collect command to recollect it")
    array = read_array_header(path)
    if array.dtype != dtype:
        raise DatasetError(f"shard file {path}: '{key}' has dtype {array.dtype}, format {FORMAT_VERSION} stores "
                           f"{dtype}; {RECOLLECT}")
    if array.shape != tuple(shape):
        raise DatasetError(f"shard file {path}: '{key}' has shape {array.shape}, manifest says {tuple(shape)}; {RECOLLECT}")
    size = path.stat().st_size
    if size != array.offset + array.nbytes:
        raise DatasetError(
            f"shard file {path} has {size} bytes where its header needs {array.offset + array.nbytes}: "
            f"it is truncated or damaged; {RECOLLECT}"
        )
    return array


def _iter_values(array: ArrayFile, block_bytes: int = 1 << 20):
    """The values of a ``.npy`` file, a block at a time, without mapping it into memory."""
    block_bytes -= block_bytes % array.dtype.itemsize
    with open(array.path, "rb") as file:
        file.seek(array.offset)
        for block in iter(lambda: file.read(block_bytes), b""):
            yield np.frombuffer(block, array.dtype)


def verify_contents(array: ArrayFile, key: str, sha256: str, episodes: list[int]) -> None:
    """The checks that read a whole file, made once per file version: checksum, finite values, episode ids."""
    if file_sha256(array.path) != sha256:
        raise DatasetError(f"shard file {array.path} is corrupt or was modified (sha256 differs from "
                           f"{MANIFEST_NAME}); {RECOLLECT}")
    if array.dtype.kind == "f" and not all(np.isfinite(values).all() for values in _iter_values(array)):
        raise DatasetError(f"shard file {array.path}: '{key}' holds NaN or inf values; {RECOLLECT}")
    if key == "episode" and not np.array_equal(np.concatenate(list(_iter_values(array))), np.arange(*episodes)):
        raise DatasetError(f"shard file {array.path} holds other episodes than [{episodes[0]}, {episodes[1]}) "
                           f"that {MANIFEST_NAME} lists; {RECOLLECT}")


def _stat_signature(path: Path) -> list[int]:
    """What changes when a file is rewritten, truncated, touched or copied: size, mtime and ctime."""
    stat = os.stat(path)
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def _read_verified(directory: Path) -> dict[str, Any]:
    """The verification cache; a missing or broken one only means re-hashing."""
    try:
        files = json.loads((Path(directory) / VERIFIED_NAME).read_text())["files"]
        return files if isinstance(files, dict) else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def verify_shards(directory: Path, manifest: dict[str, Any]) -> dict[str, dict[str, ArrayFile]]:
    """Check every listed shard file and return where each array lives, by shard and array name.

    Headers and sizes are checked on every load; a file is hashed (and scanned for NaN/inf) only when
    ``verified.json`` has no entry for its current (size, mtime_ns, ctime_ns) and manifest sha256, so
    a repeated load of a large dataset reads a few bytes per file instead of the whole dataset.
    """
    directory = Path(directory)
    verified, seen = _read_verified(directory), {}
    shards: dict[str, dict[str, ArrayFile]] = {}
    for shard in sorted(manifest["shards"]):
        record = manifest["shards"][shard]
        if not isinstance(record, dict) or "episodes" not in record or "files" not in record:
            raise DatasetError(f"{directory / MANIFEST_NAME} lists shard {shard} without its episodes or files; "
                               f"the manifest was damaged: recollect the dataset with jepa-wm collect")
        shards[shard] = {}
        for key, (shape, dtype) in expected_arrays(manifest, record).items():
            path = directory / shard_file(shard, key)
            sha256 = record["files"].get(key)
            if sha256 is None:
                raise DatasetError(f"{directory / MANIFEST_NAME} lists shard {shard} without its '{key}' file; "
                                   f"rerun the same collect command to recollect it")
            array = check_array_file(path, key, shape, dtype)
            entry = {"sha256": sha256, "stat": _stat_signature(path)}
            if verified.get(path.name) != entry:
                verify_contents(array, key, sha256, record["episodes"])
            seen[path.name] = entry
            shards[shard][key] = array
    if seen != verified:
        _write_verified(directory, seen)
    return shards


def _write_verified(directory: Path, files: dict[str, Any]) -> None:
    try:
        write_json_atomic(Path(directory) / VERIFIED_NAME, {"files": files})
    except OSError as error:  # a read-only dataset still loads; it is just hashed on every load
        warnings.warn(f"cannot record verified shard files in {directory} ({error}); every load will re-hash them")
