"""Datasets shared with stable-worldmodel: export ours to its HDF5 format, import its HDF5 files into ours.

    from jepa_wm.data.interop import export_hdf5, import_hdf5
    export_hdf5("datasets/reacher-easy", "peers/reacher-easy.h5")     # ours -> stable-worldmodel
    import_hdf5("peers/reacher-easy.h5", "datasets/reacher-again")   # stable-worldmodel -> ours

stable-worldmodel's HDF5 format (``stable_worldmodel/data/formats/hdf5.py``, version 0.1.1) is one ``.h5``
file with one dataset per column, every column holding one row per *frame* of every episode, episodes
back to back, plus two index datasets::

    ep_len      (E,)            int32   rows of each episode
    ep_offset   (E,)            int64   first row of each episode
    <column>    (N, *item)      any     N = sum(ep_len); chunks (1, *item), no compression

Its collector (``World.collect``) stores in row t the observation at t and the action taken from it, so
an episode of T actions has T + 1 rows and its last row's action is NaN; its training scripts replace
that NaN by 0 (``torch.nan_to_num``) and read ``frameskip`` consecutive actions per observation step.

What we write, per frame row (episode e, step t in [0, T])::

    pixels      (N, H, W, 3)    uint8    our pixels (only when the dataset has pixel observations)
    observation (N, S)          float32  our state vector (stable-worldmodel's name for the flat obs)
    action      (N, A)          float32  our action[e, t]; NaN in each episode's last row (t = T)
    physics     (N, P)          float32  our full physics state (qpos, qvel, act)
    qpos, qvel  (N, nq), (N, nv) float32 slices of physics, when ``physics_split=(nq, nv)`` is given
    position    (N, C)          float32  our success coordinates
    episode_idx (N,)            int64    our global episode index (as the Lance format's index column)
    step_idx    (N,)            int32    t

and the file attribute ``jepa_wm_manifest``: our manifest (JSON), so that importing the file back gives a
dataset identical to the one exported, file for file. A file without it (collected by stable-worldmodel)
is imported with the env config and columns the caller names; its episodes must all have the same length
(format 2 stores ``steps_per_episode`` actions per episode), or be cropped to ``steps_per_episode``.

Writes are atomic like every dataset write here: the ``.h5`` file is written under a temporary name and
renamed into place; an import writes shards with ``write_shard`` and a sealed manifest, under the
dataset directory's lock, exactly as a collection does.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import numpy as np
from jepa_wm.data.storage import (
    ARRAY_DTYPES,
    DATASET_FILES,
    MANIFEST_NAME,
    HEADER_FIELDS,
    DatasetError,
    check_header_types,
    check_shard_names,
    load_manifest,
    new_manifest,
    remove_partial_files,
    require_fields,
    sealed,
    shard_file,
    shard_name,
    verify_shards,
    write_shard,
)

from jepa_wm.errors import ConfigError
from jepa_wm.files import (
    DirectoryLock,
    atomic_path,
    check_output_directory,
    free_bytes,
    is_temporary_of,
    remove_temporaries,
    write_json_atomic,
)

MANIFEST_ATTR = "jepa_wm_manifest"
INDEX_COLUMNS = ("ep_len", "ep_offset")
# Our array -> the stable-worldmodel column it becomes (and is read back from).
COLUMNS = {"pixels": "pixels", "state": "observation", "action": "action", "physics": "physics",
           "position": "position"}


def _h5py():
    try:
        import h5py
    except ImportError as error:  # pragma: no cover - h5py is in the dev extra
        raise ConfigError("reading or writing stable-worldmodel HDF5 files needs h5py: pip install h5py") from error
    try:  # files compressed with HDF5 filter plugins (blosc, zstd, ...) read only with these registered
        import hdf5plugin  # noqa: F401
    except ImportError:
        pass
    return h5py


def physics_split_of(env_cfg: dict[str, Any]) -> tuple[int, int]:
    """(nq, nv) of an env config's physics: how ``physics`` splits into stable-worldmodel's qpos and qvel."""
    from jepa_wm.data.collect import collection_env_settings
    from jepa_wm.data.envs import make_env

    env = make_env(collection_env_settings(env_cfg))
    try:
        return int(env.physics.model.nq), int(env.physics.model.nv)
    finally:
        env.close()


# ------------------------------------------------------------------------------------------ export
def export_hdf5(dataset: str | Path, out: str | Path, physics_split: tuple[int, int] | None = None) -> Path:
    """Write the format-2 dataset ``dataset`` as one stable-worldmodel HDF5 file ``out`` (``.h5``).

    Every shard file is verified first (checksums, as any load does). ``physics_split=(nq, nv)`` adds the
    ``qpos`` and ``qvel`` columns stable-worldmodel's DMC evaluation sets states from. Returns ``out``.
    """
    h5py = _h5py()
    dataset, out = Path(dataset), Path(out)
    if out.suffix not in (".h5", ".hdf5"):
        raise ConfigError(f"out={out} must end in .h5 or .hdf5 (stable-worldmodel detects HDF5 files by suffix)")
    if out.is_dir():
        raise ConfigError(f"out={out} is a directory; pass the path of the .h5 file to write")
    if out.exists() and not _is_an_export(out):
        raise ConfigError(f"out={out} already exists and was not written by jepa-wm convert; it is left as it is: "
                          f"pass the path of a new .h5 file")
    manifest = load_manifest(dataset)
    finished = sum(last - first for first, last in (record["episodes"] for record in manifest["shards"].values()))
    if finished < manifest["episodes"]:
        raise DatasetError(f"dataset {dataset} is incomplete: {finished} of {manifest['episodes']} episodes were "
                           f"collected; rerun its collect command to finish it before exporting")
    shards = verify_shards(dataset, manifest)
    if physics_split is not None and sum(physics_split) > manifest["physics_size"]:
        raise ConfigError(f"physics_split {tuple(physics_split)} is longer than the physics state "
                          f"({manifest['physics_size']} values)")
    steps = manifest["steps_per_episode"]
    rows = steps + 1
    episodes = manifest["episodes"]
    total = episodes * rows
    observations = manifest["observations"]
    columns = {"action": ((manifest["action"]["dim"],), np.float32),
               "physics": ((manifest["physics_size"],), np.float32),
               "position": ((manifest["position_size"],), np.float32),
               "episode_idx": ((), np.int64), "step_idx": ((), np.int32)}
    for key, shape in observations.items():
        columns[COLUMNS[key]] = (tuple(shape), ARRAY_DTYPES[key])
    if physics_split is not None:
        columns["qpos"] = ((int(physics_split[0]),), np.float32)
        columns["qvel"] = ((int(physics_split[1]),), np.float32)

    out.parent.mkdir(parents=True, exist_ok=True)
    remove_temporaries(out.parent, [out.name])  # of an export that was killed
    # Refused up front: HDF5 that hits a full disk half-way leaves its library in a state that crashes the
    # process on exit (after the error line), so an export must not start without the room it needs.
    needed = total * sum(int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
                         for shape, dtype in columns.values()) * 1.05 + (1 << 20)
    free = free_bytes(out.parent)
    if needed > free:
        raise OSError(errno.ENOSPC, f"No space left on device: the export needs {needed / 1e6:.1f} MB, "
                                    f"{out.parent} has {free / 1e6:.1f} MB free", str(out))
    with atomic_path(out) as temporary:
        with h5py.File(temporary, "w", libver="latest") as file:
            file.attrs[MANIFEST_ATTR] = json.dumps(manifest, sort_keys=True)
            data = {name: file.create_dataset(name, shape=(total, *shape), maxshape=(None, *shape), dtype=dtype,
                                              chunks=(1, *shape))
                    for name, (shape, dtype) in columns.items()}
            file.create_dataset("ep_len", data=np.full(episodes, rows, np.int32), maxshape=(None,), chunks=True)
            file.create_dataset("ep_offset", data=np.arange(episodes, dtype=np.int64) * rows, maxshape=(None,),
                                chunks=True)
            for shard in sorted(shards):
                arrays = {key: np.load(array.path, mmap_mode="r", allow_pickle=False)
                          for key, array in shards[shard].items()}
                for index, episode in enumerate(arrays["episode"]):
                    start = int(episode) * rows
                    where = slice(start, start + rows)
                    action = np.full((rows, manifest["action"]["dim"]), np.nan, np.float32)
                    action[:steps] = arrays["action"][index]
                    data["action"][where] = action
                    data["physics"][where] = arrays["physics"][index]
                    data["position"][where] = arrays["position"][index]
                    for key in observations:
                        data[COLUMNS[key]][where] = arrays[key][index]
                    if physics_split is not None:
                        nq, nv = (int(size) for size in physics_split)
                        data["qpos"][where] = arrays["physics"][index][:, :nq]
                        data["qvel"][where] = arrays["physics"][index][:, nq:nq + nv]
                    data["episode_idx"][where] = np.full(rows, int(episode), np.int64)
                    data["step_idx"][where] = np.arange(rows, dtype=np.int32)
    return out


def _is_an_export(path: Path) -> bool:
    """Whether ``path`` is an HDF5 file that ``export_hdf5`` wrote (it carries our manifest): the only kind of
    existing file an export may replace."""
    try:
        with _h5py().File(path, "r") as file:
            return MANIFEST_ATTR in file.attrs
    except OSError:
        return False


# ------------------------------------------------------------------------------------------ import
def read_hdf5_layout(path: str | Path) -> dict[str, Any]:
    """Columns (shape of one row, dtype), episode lengths and offsets of a stable-worldmodel HDF5 file,
    checked for the layout its reader relies on; and our manifest, if the file carries one."""
    h5py = _h5py()
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path} is not a file; pass a stable-worldmodel .h5 file")
    try:
        with h5py.File(path, "r") as file:
            missing = [name for name in INDEX_COLUMNS if name not in file]
            if missing:
                raise DatasetError(f"{path} has no {' or '.join(missing)}: it is not a stable-worldmodel HDF5 dataset")
            lengths = file["ep_len"][:].astype(np.int64)
            offsets = file["ep_offset"][:].astype(np.int64)
            columns = {name: (tuple(file[name].shape[1:]), file[name].dtype, int(file[name].shape[0]))
                       for name in file.keys() if name not in INDEX_COLUMNS and isinstance(file[name], h5py.Dataset)}
            manifest = file.attrs.get(MANIFEST_ATTR)
    except OSError as error:
        raise DatasetError(f"{path} cannot be read as HDF5 ({error})") from error
    if len(lengths) != len(offsets) or not len(lengths):
        raise DatasetError(f"{path}: ep_len and ep_offset disagree or are empty ({len(lengths)} vs {len(offsets)})")
    rows = int(lengths.sum())
    if np.any(lengths < 1) or np.any(offsets < 0) or np.any(offsets + lengths > rows):
        raise DatasetError(f"{path}: ep_len/ep_offset point outside the {rows} rows of its columns")
    short = [name for name, (_, _, size) in columns.items() if size < rows]
    if short:
        raise DatasetError(f"{path}: column(s) {', '.join(short)} hold fewer rows than ep_len adds up to ({rows})")
    if isinstance(manifest, bytes):
        manifest = manifest.decode()
    try:
        manifest = json.loads(manifest) if manifest is not None else None
    except (TypeError, ValueError) as error:
        raise DatasetError(f"{path}: its {MANIFEST_ATTR} attribute is not JSON ({error}); the file was damaged") from None
    return {"lengths": lengths, "offsets": offsets, "columns": {name: value[:2] for name, value in columns.items()},
            "manifest": manifest}


def _imported_header(path: Path, env: dict[str, Any] | None, steps: int, mapping: dict[str, Any], seed: int,
                     episodes: int, episodes_per_shard: int) -> dict[str, Any]:
    """The format-2 header of a file that stable-worldmodel (not ``export_hdf5``) wrote: what a collection in
    ``env`` would record (observation shapes, physics and position sizes, action bounds, action repeat), with
    the observations the file has, and where it came from."""
    from jepa_wm.data.collect import dataset_header

    if env is None:
        raise ConfigError(f"{path} was not exported from a jepa-wm dataset (it has no {MANIFEST_ATTR} attribute): "
                          f"pass env= (our env config of the task its episodes come from)")
    header = dataset_header(dict(env), steps, {"name": "imported"}, seed, episodes, episodes_per_shard)
    absent = [key for key in header["observations"] if key not in mapping]
    header["observations"] = {key: shape for key, shape in header["observations"].items() if key in mapping}
    extra = [key for key in ("pixels", "state") if key in mapping and key not in header["observations"]]
    if extra:
        raise ConfigError(f"columns: the env config records no {', '.join(extra)} observations (env.obs_type)")
    if not header["observations"]:
        raise ConfigError(f"{path} has none of the observations the env config records ({', '.join(absent)})")
    header["imported_from"] = {"format": "stable-worldmodel-hdf5", "file": path.name, "columns": dict(mapping)}
    return header


def import_hdf5(path: str | Path, out: str | Path, env: dict[str, Any] | None = None,
                columns: dict[str, Any] | None = None, episodes_per_shard: int | None = None,
                steps_per_episode: int | None = None, seed: int = 0) -> Path:
    """Write the stable-worldmodel HDF5 file ``path`` as a format-2 dataset in the new directory ``out``.

    A file written by ``export_hdf5`` is imported with its own manifest: the result is identical to the
    exported dataset. Any other file needs ``env`` (our env config the episodes come from) and, where its
    columns are named otherwise, ``columns``: our array -> its column, or a list of columns concatenated
    (default: pixels, state <- observation, action, physics <- physics or [qpos, qvel], position), or
    None to leave an observation out; an array whose column is missing is an error naming it. Episodes
    must have equal length (T + 1 rows for T actions) unless ``steps_per_episode`` crops them; the last
    row's action (NaN) is dropped.
    """
    path, out = Path(path), check_output_directory(out)
    if out.exists() and any(not is_temporary_of(entry.name, DATASET_FILES) for entry in out.iterdir()):
        raise ConfigError(f"out={out} is not empty; import into a new or empty directory")
    layout = read_hdf5_layout(path)
    lengths, offsets = layout["lengths"], layout["offsets"]
    manifest = layout["manifest"]
    if manifest is not None:
        header = _embedded_header(path, manifest)
        if steps_per_episode is not None and steps_per_episode != header["steps_per_episode"]:
            raise ConfigError(f"{path} was exported with {header['steps_per_episode']} steps per episode; "
                              f"steps_per_episode={steps_per_episode} cannot change an exported dataset")
        mapping = {key: COLUMNS[key] for key in ("action", "physics", "position", *header["observations"])}
        shards = [(name, *record["episodes"]) for name, record in sorted(manifest["shards"].items())]
    else:
        mapping = _default_columns(layout["columns"], columns or {})
        steps = int(lengths.min()) - 1 if steps_per_episode is None else int(steps_per_episode)
        if steps < 1:
            raise DatasetError(f"{path} has an episode of {int(lengths.min())} row(s); format 2 needs at least 2 "
                               f"(one action)")
        if steps_per_episode is None and np.any(lengths != lengths[0]):
            raise DatasetError(f"{path} has episodes of {int(lengths.min())} to {int(lengths.max())} rows; format 2 "
                               f"stores episodes of equal length: pass steps_per_episode= (at most "
                               f"{int(lengths.min()) - 1}) to crop them")
        if np.any(lengths < steps + 1):
            raise DatasetError(f"{path} has episodes shorter than steps_per_episode + 1 = {steps + 1} rows")
        per_shard = int(episodes_per_shard or 10)
        header = _imported_header(path, env, steps, mapping, seed, len(lengths), per_shard)
        shards = [(shard_name(index), first, min(first + per_shard, len(lengths)))
                  for index, first in enumerate(range(0, len(lengths), per_shard))]
    check_header_types(path, new_manifest(header))
    steps = header["steps_per_episode"]
    if len(lengths) != header["episodes"]:
        raise DatasetError(f"{path} holds {len(lengths)} episodes, its manifest says {header['episodes']}")
    if np.any(lengths < steps + 1):
        raise DatasetError(f"{path} has episodes shorter than {steps + 1} rows ({steps} actions)")

    h5py = _h5py()
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    with DirectoryLock(out, "a dataset"):
        remove_partial_files(out)
        manifest_out = new_manifest(header)
        try:
            write_json_atomic(out / MANIFEST_NAME, manifest_out)
            with h5py.File(path, "r") as file:
                for name, first, last in shards:
                    arrays = _read_shard(file, mapping, offsets, first, last, steps, header)
                    manifest_out["shards"][name] = sealed(manifest_out, name, write_shard(out, name, arrays))
                    write_json_atomic(out / MANIFEST_NAME, manifest_out)
            load_manifest(out)  # the result reads back as a dataset: header seal and shard seals
        except BaseException:
            # A refused or interrupted import leaves out= as it found it, so that its rerun starts afresh.
            _remove_import(out, [name for name, _, _ in shards], created)
            raise
    return out


def _remove_import(out: Path, shards: list[str], created: bool) -> None:
    """Delete the files an unfinished import wrote (its manifest, its shards' files) and nothing else; the
    directory too if the import created it and nothing else is in it."""
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    for name in shards:
        for key in ARRAY_DTYPES:
            (out / shard_file(name, key)).unlink(missing_ok=True)
    remove_partial_files(out)
    if created and not any(out.iterdir()):
        out.rmdir()


def _embedded_header(path: Path, manifest: Any) -> dict[str, Any]:
    """The header of the manifest an exported file carries, checked like a dataset's own before anything is
    written: every field with its type, plain shard names, and shard records that cover the episodes once."""
    where = f"{path} ({MANIFEST_ATTR})"
    if not isinstance(manifest, dict):
        raise DatasetError(f"{where} is not a JSON object: the file was damaged or not written by jepa-wm convert")
    require_fields(where, manifest, (*HEADER_FIELDS, "shards"))
    header = {key: value for key, value in manifest.items() if key not in ("shards", "header_sha256")}
    check_header_types(where, {**new_manifest(header), "shards": manifest["shards"]})
    check_shard_names(where, manifest["shards"])
    covered = 0
    for name, record in sorted(manifest["shards"].items()):
        episodes = record.get("episodes") if isinstance(record, dict) else None
        if not (isinstance(episodes, list) and len(episodes) == 2 and episodes[0] == covered
                and all(isinstance(n, int) and not isinstance(n, bool) for n in episodes) and episodes[1] > covered):
            raise DatasetError(f"{where}: shard {name} lists episodes {str(episodes)[:40]}, not the next [first, last) "
                               f"after episode {covered}: the manifest was damaged")
        covered = episodes[1]
    if covered != header["episodes"]:
        raise DatasetError(f"{where}: its shards hold {covered} episodes, its header says {header['episodes']}")
    return header


def _default_columns(found: dict[str, Any], columns: dict[str, Any]) -> dict[str, Any]:
    """Our array -> its column(s), for a file stable-worldmodel wrote; the caller's choices first."""
    mapping = {key: value for key, value in columns.items() if value is not None}  # None: leave it out
    defaults = {"pixels": "pixels", "state": "observation", "action": "action", "position": "position"}
    for key, column in defaults.items():
        if key not in columns and column in found:
            mapping[key] = column
    if "physics" not in columns:
        if "physics" in found:
            mapping["physics"] = "physics"
        elif "qpos" in found and "qvel" in found:
            mapping["physics"] = ["qpos", "qvel"]
    missing = [key for key in ("action", "physics", "position") if key not in mapping]
    if missing:
        raise ConfigError(f"the file has no column for our {', '.join(missing)} (its columns: {', '.join(sorted(found))}); "
                          f"name them with columns={{ours: theirs}}, e.g. columns={{'position': 'finger_pos'}}")
    if "pixels" not in mapping and "state" not in mapping:
        raise ConfigError(f"the file has neither pixels nor an observation column (its columns: {', '.join(sorted(found))})")
    for key, names in mapping.items():
        if key not in COLUMNS:
            raise ConfigError(f"columns: '{key}' is none of our arrays ({', '.join(COLUMNS)})")
        for name in names if isinstance(names, (list, tuple)) else [names]:
            if name not in found:
                raise ConfigError(f"columns: '{name}' (for our {key}) is not in the file (its columns: "
                                  f"{', '.join(sorted(found))})")
    return mapping


def _read_shard(file, mapping: dict[str, Any], offsets: np.ndarray, first: int, last: int, steps: int,
                header: dict[str, Any]) -> dict[str, np.ndarray]:
    """Episodes [first, last) as our shard arrays (E, T or T+1, ...), with our dtypes."""
    arrays: dict[str, list[np.ndarray]] = {key: [] for key in mapping}
    for episode in range(first, last):
        start = int(offsets[episode])
        for key, names in mapping.items():
            names = names if isinstance(names, (list, tuple)) else [names]
            parts = [file[name][start:start + steps + 1] for name in names]
            value = parts[0] if len(parts) == 1 else np.concatenate([part.reshape(steps + 1, -1) for part in parts], -1)
            if key == "action":
                value = value[:steps].reshape(steps, -1)
            elif key in ("state", "physics", "position"):
                value = value.reshape(steps + 1, -1)
            arrays[key].append(value)
    stacked = {}
    for key, values in arrays.items():
        value = np.stack(values)
        dtype = ARRAY_DTYPES[key]
        if dtype == np.uint8 and value.dtype != np.uint8:
            raise DatasetError(f"column {mapping[key]} holds {value.dtype} images; format 2 stores uint8 pixels")
        if dtype.kind == "f" and not np.isfinite(value).all():
            raise DatasetError(f"column {mapping[key]} holds NaN or inf values inside episodes [{first}, {last})"
                               f"{' (other than the last row of each episode)' if key == 'action' else ''}")
        stacked[key] = np.ascontiguousarray(value.astype(dtype, copy=False))
    stacked["episode"] = np.arange(first, last, dtype=np.int64)
    expected = {"action": (header["action"]["dim"],), "physics": (header["physics_size"],),
                "position": (header["position_size"],),
                **{key: tuple(shape) for key, shape in header["observations"].items()}}
    for key, shape in expected.items():
        if stacked[key].shape[2:] != shape:
            raise DatasetError(f"column {mapping[key]} has rows of shape {stacked[key].shape[2:]}, the dataset "
                               f"needs {shape} for our {key}")
    return stacked
