"""Convert format-1 datasets (compressed ``.npz`` shards) to format 2 (one ``.npy`` file per array).

    python jepa-wm convert path=datasets/reacher-easy-0           # in place
    python jepa-wm convert path=datasets/old out=datasets/new     # into another directory

The old dataset stays usable until the conversion is complete: new files are written next to the
old shards, finished shards are recorded in ``convert-progress.json``, and the format-2 manifest
replaces the old one in a single rename; only then are the ``.npz`` shards deleted. A killed
conversion is finished by rerunning the same command.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from jepa_wm.data.storage import (
    DATASET_FILES,
    FORMAT_VERSION,
    HEADER_FIELDS,
    MANIFEST_NAME,
    DatasetError,
    check_header_types,
    check_shard_names,
    expected_arrays,
    file_sha256,
    header_sha256,
    read_manifest_json,
    remove_partial_files,
    require_fields,
    sealed,
    shard_file,
    write_shard,
)

from jepa_wm.files import DirectoryLock, check_output_directory, is_temporary_of, write_json_atomic

PROGRESS_NAME = "convert-progress.json"
# Observations whose format-1 values cannot be kept, by env domain, and why.
GOAL_DEPENDENT = {
    "reacher": {"state": "reacher's format-1 state vectors include to_target, which points at the goal"},
}


def format2_header(manifest: dict[str, Any]) -> dict[str, Any]:
    """The format-2 header of a format-1 manifest: goal-dependent observations dropped, and said so."""
    header = {key: value for key, value in manifest.items() if key != "shards"}
    header["format_version"] = FORMAT_VERSION
    header["converted_from_format"] = 1
    dropped = {key: reason for key, reason in GOAL_DEPENDENT.get(manifest["env"].get("domain"), {}).items()
               if key in manifest["observations"]}
    if dropped:
        header["observations"] = {key: shape for key, shape in manifest["observations"].items() if key not in dropped}
        header["dropped_observations"] = dropped
    return header


def _read_progress(target: Path, source_sha256: str) -> dict[str, Any]:
    """Shards already converted from this very source manifest (none if the source changed)."""
    try:
        progress = json.loads((target / PROGRESS_NAME).read_text())
    except (OSError, ValueError):
        progress = {}
    if (not isinstance(progress, dict) or progress.get("source_manifest_sha256") != source_sha256
            or not isinstance(progress.get("shards"), dict)):
        progress = {"source_manifest_sha256": source_sha256, "shards": {}}
    return progress


def _converted(target: Path, shard: str, record: dict[str, Any] | None) -> bool:
    """Whether an earlier run finished this shard: recorded in the progress file, its files present."""
    return (isinstance(record, dict) and bool(record.get("files"))
            and all((target / shard_file(shard, key)).is_file() for key in record["files"]))


def _convert_shard(source: Path, name: str, manifest: dict[str, Any], header: dict[str, Any], target: Path) -> dict:
    """Check one format-1 shard against its manifest and write it as format-2 files; returns its record."""
    path, record = source / name, manifest["shards"][name]
    fix = "the dataset cannot be converted without it; recollect the dataset with jepa-wm collect"
    if not path.is_file():
        raise DatasetError(f"format-1 shard {path} is listed in {MANIFEST_NAME} but missing; {fix}")
    if file_sha256(path) != record.get("sha256"):
        raise DatasetError(f"format-1 shard {path} is corrupt or was modified (sha256 differs from {MANIFEST_NAME}); {fix}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as error:  # zip, zlib and format errors all mean the same thing here
        raise DatasetError(f"format-1 shard {path} cannot be read ({type(error).__name__}: {error}); {fix}") from error
    for key, (shape, dtype) in expected_arrays(header, record).items():
        if key not in arrays or arrays[key].shape != shape or arrays[key].dtype != dtype:
            found = f"{arrays[key].dtype} {arrays[key].shape}" if key in arrays else "nothing"
            raise DatasetError(f"format-1 shard {path}: '{key}' should be {dtype} {shape}, found {found}; {fix}")
    kept = {key: arrays[key] for key in expected_arrays(header, record)}
    shard = name.removesuffix(".npz")
    converted = write_shard(target, shard, kept)
    if converted["episodes"] != list(record["episodes"]):
        raise DatasetError(f"format-1 shard {path} holds episodes {converted['episodes']}, {MANIFEST_NAME} says "
                           f"{record['episodes']}; {fix}")
    return converted


def _check_free_space(target: Path, header: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """Refuse up front rather than fail half-way: format 2 stores arrays uncompressed."""
    needed = sum(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize + 128
                 for record in records for shape, dtype in expected_arrays(header, record).values())
    free = shutil.disk_usage(target).free
    if needed > free:
        raise DatasetError(
            f"converting needs {needed / 1e9:.2f} GB free in {target}, which has {free / 1e9:.2f} GB (format "
            f"{FORMAT_VERSION} stores arrays uncompressed); free some space or pass out= on another disk"
        )


def _remove_leftovers(directory: Path, npz_names) -> None:
    """After the new manifest is in place: the old shards, then the progress file that vouches for them."""
    for name in npz_names:
        (directory / name).unlink(missing_ok=True)
    (directory / PROGRESS_NAME).unlink(missing_ok=True)


def convert_dataset(path, out=None) -> dict[str, Any]:
    """Convert the format-1 dataset at ``path`` in place, or into ``out``; returns a summary.

    Summary keys: path (the format-2 dataset), shards, episodes, converted (shards written by this
    call), dropped (observation -> reason), bytes_before, bytes_after, message (one line for people).
    """
    source = Path(path)
    target = Path(out) if out and Path(out).resolve() != source.resolve() else source
    manifest = read_manifest_json(source)
    version = manifest.get("format_version")
    if version == FORMAT_VERSION:
        if target == source:
            # A conversion killed after its last rename leaves old shards behind: finish removing them.
            if (source / PROGRESS_NAME).exists():
                _remove_leftovers(source, [file.name for file in source.glob("shard-*.npz")])
            return {"path": source, "converted": 0, "message": f"{source} is already in format {FORMAT_VERSION}"}
        raise DatasetError(f"{source} is already in format {FORMAT_VERSION}; there is nothing to convert")
    if version != 1:
        raise DatasetError(f"{source / MANIFEST_NAME} has format_version {version!r}; only format-1 datasets can be converted")
    require_fields(source / MANIFEST_NAME, manifest, (*HEADER_FIELDS, "shards"))
    check_header_types(source / MANIFEST_NAME, manifest, (*HEADER_FIELDS, "shards"))
    check_shard_names(source / MANIFEST_NAME, manifest["shards"], suffix=".npz")
    if target != source:
        check_output_directory(target)
        target.mkdir(parents=True, exist_ok=True)  # (a directory that had to be made is empty: nothing is refused then)
    with DirectoryLock(target, "a dataset conversion"):  # first: a conversion at work there is named as such
        if target != source:
            _check_conversion_target(target)
        return _convert_locked(source, target, manifest)


def _check_conversion_target(target: Path) -> None:
    """A new or empty directory, or one this conversion was interrupted in (its progress file)."""
    if (target / MANIFEST_NAME).exists():
        raise DatasetError(f"out={target} already holds a dataset; pass a new directory for the converted dataset")
    strangers = [entry.name for entry in target.iterdir() if entry.name != PROGRESS_NAME
                 and not is_temporary_of(entry.name, DATASET_FILES)]
    if strangers and not (target / PROGRESS_NAME).exists():
        raise DatasetError(f"out={target} is not empty ({', '.join(sorted(strangers)[:3])}); pass a new or empty "
                           f"directory for the converted dataset")


def _convert_locked(source: Path, target: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    header = format2_header(manifest)
    remove_partial_files(target)
    source_sha256 = hashlib.sha256((source / MANIFEST_NAME).read_bytes()).hexdigest()
    progress = _read_progress(target, source_sha256)
    names = sorted(manifest["shards"])
    todo = [name for name in names if not _converted(target, name.removesuffix(".npz"),
                                                       progress["shards"].get(name.removesuffix(".npz")))]
    _check_free_space(target, header, [manifest["shards"][name] for name in todo])
    for name in todo:
        progress["shards"][name.removesuffix(".npz")] = _convert_shard(source, name, manifest, header, target)
        write_json_atomic(target / PROGRESS_NAME, progress)

    converted = {**header, "shards": {}}
    converted["header_sha256"] = header_sha256(converted)
    for shard in (name.removesuffix(".npz") for name in names):
        converted["shards"][shard] = sealed(converted, shard, progress["shards"][shard])
    bytes_before = sum((source / name).stat().st_size for name in names if (source / name).is_file())
    write_json_atomic(target / MANIFEST_NAME, converted)  # the commit point: from here on, format 2
    _remove_leftovers(target, names if target == source else [])
    bytes_after = sum((target / shard_file(shard, key)).stat().st_size
                      for shard, record in converted["shards"].items() for key in record["files"])
    dropped = header.get("dropped_observations", {})
    note = "".join(f"; dropped the '{key}' observation ({reason}): recollect with jepa-wm collect to train on it"
                   for key, reason in dropped.items())
    return {
        "path": target, "shards": len(names), "converted": len(todo), "dropped": dropped,
        "episodes": sum(record["episodes"][1] - record["episodes"][0] for record in converted["shards"].values()),
        "bytes_before": bytes_before, "bytes_after": bytes_after,
        "message": f"converted {source} to format {FORMAT_VERSION} in {target}: {len(names)} shards, "
                   f"{bytes_before / 1e6:.1f} MB -> {bytes_after / 1e6:.1f} MB{note}",
    }
