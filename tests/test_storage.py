"""Dataset integrity checks (cheap on repeated loads) and the format-1 to format-2 conversion."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jepa_wm.data.convert
import jepa_wm.data.storage
import numpy as np
import pytest
from jepa_wm.data.convert import PROGRESS_NAME, convert_dataset
from jepa_wm.data.dataset import load_episodes
from jepa_wm.data.storage import (
    MANIFEST_NAME,
    VERIFIED_NAME,
    DatasetError,
    file_sha256,
    load_manifest,
    sealed,
    shard_file,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def dataset_copy(tmp_path, reacher_pixel_dataset):
    """A private copy of the 6-episode, 20-step pixel dataset (shards of 2 episodes) to break."""
    return shutil.copytree(reacher_pixel_dataset, tmp_path / "copy")


def edit_manifest(path, edit):
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    edit(manifest)
    (path / MANIFEST_NAME).write_text(json.dumps(manifest))


def rewrite_array(path, shard, key, change):
    """Replace one shard file by ``change(its array)`` and record its new checksum (and reseal the record), as a
    careful forger would: what is left to catch it are the checks of the contents."""
    file = path / shard_file(shard, key)
    np.save(file, change(np.load(file)))

    def record_checksum(manifest):
        record = {**manifest["shards"][shard], "files": {**manifest["shards"][shard]["files"], key: file_sha256(file)}}
        manifest["shards"][shard] = sealed(manifest, shard, record)

    edit_manifest(path, record_checksum)


def all_arrays(path):
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    return {(shard, key): np.load(path / shard_file(shard, key), allow_pickle=False)
            for shard, record in manifest["shards"].items() for key in record["files"]}


def write_format1(source, out, domain=None):
    """The arrays of format-2 dataset ``source`` as a format-1 dataset: compressed .npz shards, as the old code wrote."""
    manifest = json.loads((source / MANIFEST_NAME).read_text())
    out.mkdir()
    shards = {}
    for shard, record in sorted(manifest["shards"].items()):
        np.savez_compressed(out / f"{shard}.npz", **{key: np.load(source / shard_file(shard, key)) for key in record["files"]})
        shards[f"{shard}.npz"] = {"episodes": record["episodes"], "sha256": file_sha256(out / f"{shard}.npz")}
    header = {key: value for key, value in manifest.items() if key not in ("shards", "header_sha256")}
    header["format_version"] = 1
    if domain is not None:
        header["env"] = {**header["env"], "domain": domain}
    (out / MANIFEST_NAME).write_text(json.dumps({**header, "shards": shards}, indent=2, sort_keys=True))
    return out


def snapshot(path):
    """Name and content of every file of a directory."""
    return {file.name: file.read_bytes() for file in sorted(path.iterdir())}


# ----------------------------------------------------------------------------------- verification
def test_repeated_loads_hash_only_new_or_changed_files(dataset_copy, monkeypatch):
    hashed = []
    monkeypatch.setattr(jepa_wm.data.storage, "file_sha256", lambda path: hashed.append(Path(path).name) or file_sha256(path))
    load_episodes(dataset_copy, "pixels")
    assert len(hashed) == 18  # a copy is new: 3 shards x 6 files
    assert (dataset_copy / VERIFIED_NAME).is_file()
    hashed.clear()
    load_episodes(dataset_copy, "state")
    assert hashed == []
    os.utime(dataset_copy / "shard-00002.physics.npy")  # same content, new mtime: hashed again, and accepted
    load_episodes(dataset_copy, "pixels")
    assert hashed == ["shard-00002.physics.npy"]


def test_a_file_modified_after_verification_is_caught_even_with_its_mtime_put_back(dataset_copy):
    load_episodes(dataset_copy, "pixels")
    file = dataset_copy / "shard-00001.pixels.npy"
    before = file.stat()
    data = bytearray(file.read_bytes())
    data[-100] ^= 0xFF
    file.write_bytes(bytes(data))
    os.utime(file, ns=(before.st_atime_ns, before.st_mtime_ns))  # size and mtime as verified; ctime is not
    with pytest.raises(DatasetError, match="shard-00001.pixels.npy is corrupt or was modified .* delete it and rerun "
                                           "the same collect command"):
        load_episodes(dataset_copy, "pixels")


def test_a_file_truncated_after_verification_is_caught_without_hashing(dataset_copy, monkeypatch):
    load_episodes(dataset_copy, "pixels")
    file = dataset_copy / "shard-00002.position.npy"
    file.write_bytes(file.read_bytes()[:-8])
    monkeypatch.setattr(jepa_wm.data.storage, "file_sha256", lambda path: pytest.fail("the size check must come first"))
    with pytest.raises(DatasetError, match="shard-00002.position.npy has .* bytes where its header needs .* truncated"):
        load_episodes(dataset_copy, "pixels")


@pytest.mark.parametrize("key", ["action", "state", "physics", "position"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_in_a_float_array_names_the_shard_file_and_array(dataset_copy, key, bad):
    def poison(array):
        array[1, 3, 0] = bad
        return array

    rewrite_array(dataset_copy, "shard-00001", key, poison)
    with pytest.raises(DatasetError, match=f"shard-00001.{key}.npy: '{key}' holds NaN or inf values; delete it"):
        load_episodes(dataset_copy, "pixels")


def test_a_shard_file_of_the_wrong_dtype_is_named(dataset_copy):
    rewrite_array(dataset_copy, "shard-00000", "physics", lambda array: array.astype(np.float64))
    with pytest.raises(DatasetError, match="shard-00000.physics.npy: 'physics' has dtype float64, format 2 stores float32"):
        load_episodes(dataset_copy, "pixels")


def test_a_shard_file_holding_other_episodes_is_named(dataset_copy):
    rewrite_array(dataset_copy, "shard-00001", "episode", lambda array: array + 2)
    with pytest.raises(DatasetError, match=r"shard-00001.episode.npy holds other episodes than \[2, 4\)"):
        load_episodes(dataset_copy, "pixels")


@pytest.mark.parametrize("remove,named", [
    (lambda manifest: manifest.pop("shards"), "shards"),
    (lambda manifest: [manifest.pop("header_sha256"), manifest.pop("steps_per_episode")], "steps_per_episode, header_sha256"),
    (lambda manifest: manifest["action"].pop("low"), "action.low"),
])
def test_a_manifest_without_required_fields_names_them(dataset_copy, remove, named):
    edit_manifest(dataset_copy, remove)
    with pytest.raises(DatasetError, match=f"manifest.json lacks required field\\(s\\) {named}: .* jepa-wm collect"):
        load_episodes(dataset_copy, "pixels")


@pytest.mark.parametrize("edit", [
    lambda manifest: manifest.update(episodes=4),
    lambda manifest: manifest["action"].update(low=[-2.0, -1.0]),
    lambda manifest: manifest["env"].update(image_size=32),
])
def test_a_manifest_edited_after_collection_is_refused(dataset_copy, edit):
    edit_manifest(dataset_copy, edit)
    with pytest.raises(DatasetError, match="manifest.json was edited after collection .* restore the original"):
        load_episodes(dataset_copy, "pixels")


def test_a_file_given_as_the_dataset_path_is_refused(dataset_copy):
    with pytest.raises(DatasetError, match=f"data.path {dataset_copy / MANIFEST_NAME} is a file; pass the dataset "
                                           f"directory written by jepa-wm collect"):
        load_episodes(dataset_copy / MANIFEST_NAME, "pixels")


def test_every_error_is_one_line(dataset_copy):
    (dataset_copy / "shard-00001.state.npy").unlink()
    with pytest.raises(DatasetError) as error:
        load_episodes(dataset_copy, "pixels")
    assert "\n" not in str(error.value)


# ------------------------------------------------------------------------------------- conversion
def test_a_format1_dataset_is_refused_with_the_command_that_converts_it(tmp_path, reacher_pixel_dataset):
    old = write_format1(reacher_pixel_dataset, tmp_path / "old")
    with pytest.raises(DatasetError) as error:
        load_episodes(old, "pixels")
    assert str(error.value) == f"{old} is a format-1 dataset; convert it with: jepa-wm convert path={old}"


def test_conversion_keeps_every_array_but_reacher_states(tmp_path, reacher_pixel_dataset):
    old = write_format1(reacher_pixel_dataset, tmp_path / "old")
    summary = convert_dataset(old)
    assert summary["path"] == old and summary["shards"] == summary["converted"] == 3 and summary["episodes"] == 6
    assert "dropped the 'state' observation" in summary["message"]
    manifest = load_manifest(old)  # format 2, header sealed
    assert manifest["observations"] == {"pixels": [64, 64, 3]} and "to_target" in manifest["dropped_observations"]["state"]
    assert sorted(file.name for file in old.iterdir() if not file.name.endswith(".npy")) == [MANIFEST_NAME]
    expected = {index: array for index, array in all_arrays(reacher_pixel_dataset).items() if index[1] != "state"}
    converted = all_arrays(old)
    assert converted.keys() == expected.keys()
    assert all(np.array_equal(converted[index], expected[index]) for index in expected)
    original, new = load_episodes(reacher_pixel_dataset, "pixels"), load_episodes(old, "pixels")
    window = ([0, 3, 5], [0, 7, 15], 5, 1)
    assert all(np.array_equal(a, b) for a, b in zip(original.read_windows(*window).values(), new.read_windows(*window).values()))
    with pytest.raises(DatasetError, match="no 'state' observations: they were dropped .* to_target.*; recollect with "
                                           "jepa-wm collect env=reacher-easy to train with model.obs_type=state"):
        load_episodes(old, "state")


def test_conversion_keeps_the_states_of_other_domains(tmp_path, reacher_state_dataset):
    old = write_format1(reacher_state_dataset, tmp_path / "old", domain="point_mass")
    convert_dataset(old)
    assert load_manifest(old)["observations"] == {"state": [4]}
    original, new = load_episodes(reacher_state_dataset, "state"), load_episodes(old, "state")
    assert np.array_equal(original.episode(4)["obs"], new.episode(4)["obs"])


def test_a_killed_conversion_leaves_the_old_dataset_usable_and_a_rerun_finishes_it(tmp_path, reacher_pixel_dataset,
                                                                                     monkeypatch):
    old = write_format1(reacher_pixel_dataset, tmp_path / "old")
    before = snapshot(old)
    written, real_write_shard = [], jepa_wm.data.convert.write_shard

    def killed_on_the_second_shard(directory, shard, arrays):
        if written:
            (Path(directory) / f".{shard}.pixels.npy.k1ll.partial").write_bytes(b"half a file")  # as SIGKILL leaves
            raise KeyboardInterrupt
        written.append(shard)
        return real_write_shard(directory, shard, arrays)

    monkeypatch.setattr(jepa_wm.data.convert, "write_shard", killed_on_the_second_shard)
    with pytest.raises(KeyboardInterrupt):
        convert_dataset(old)
    now = snapshot(old)
    assert {name: now[name] for name in before} == before  # manifest and .npz shards untouched: format 1 as it was
    with pytest.raises(DatasetError, match="is a format-1 dataset; convert it with"):
        load_episodes(old, "pixels")
    assert json.loads(now[PROGRESS_NAME])["shards"].keys() == {"shard-00000"}

    monkeypatch.setattr(jepa_wm.data.convert, "write_shard", real_write_shard)
    first_shard = (old / "shard-00000.pixels.npy").stat().st_mtime_ns
    assert convert_dataset(old)["converted"] == 2  # the rest, not the finished shard again
    assert (old / "shard-00000.pixels.npy").stat().st_mtime_ns == first_shard
    assert not list(old.glob(".*")) and not list(old.glob("*.npz")) and not (old / PROGRESS_NAME).exists()
    assert np.array_equal(load_episodes(old, "pixels").episode(5)["obs"],
                          load_episodes(reacher_pixel_dataset, "pixels").episode(5)["obs"])


def test_a_conversion_killed_after_its_last_rename_is_cleaned_up_by_a_rerun(tmp_path, reacher_pixel_dataset,
                                                                             monkeypatch):
    old = write_format1(reacher_pixel_dataset, tmp_path / "old")

    def killed(directory, names):
        raise KeyboardInterrupt

    monkeypatch.setattr(jepa_wm.data.convert, "_remove_leftovers", killed)
    with pytest.raises(KeyboardInterrupt):
        convert_dataset(old)
    assert load_episodes(old, "pixels").num_episodes == 6  # format 2 already; the old shards are just litter
    monkeypatch.undo()
    assert convert_dataset(old)["message"] == f"{old} is already in format 2"
    assert not list(old.glob("*.npz")) and not (old / PROGRESS_NAME).exists()


def test_conversion_into_another_directory_leaves_the_source_as_it_was(tmp_path, reacher_pixel_dataset):
    old = write_format1(reacher_pixel_dataset, tmp_path / "old")
    before = snapshot(old)
    convert_dataset(old, tmp_path / "new")
    assert snapshot(old) == before
    assert load_episodes(tmp_path / "new", "pixels").num_episodes == 6
    with pytest.raises(DatasetError, match="already holds a dataset"):
        convert_dataset(old, tmp_path / "new")


def test_conversion_refuses_a_directory_holding_a_users_file_named_like_part_of_its_progress_file(
        tmp_path, reacher_pixel_dataset):
    old = write_format1(reacher_pixel_dataset, tmp_path / "old")
    target = tmp_path / "new"
    target.mkdir()
    (target / "progress").write_text("mine")  # a user's file, only a part of the progress file's name
    before = snapshot(target)
    with pytest.raises(DatasetError, match="is not empty .progress."):
        convert_dataset(old, target)
    assert snapshot(target) == before


def test_conversion_refuses_a_corrupt_format1_shard_and_changes_nothing(tmp_path, reacher_pixel_dataset):
    old = write_format1(reacher_pixel_dataset, tmp_path / "old")
    shard = old / "shard-00001.npz"
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(DatasetError, match="format-1 shard .*shard-00001.npz is corrupt .* recollect"):
        convert_dataset(old)
    assert json.loads((old / MANIFEST_NAME).read_text())["format_version"] == 1


def test_the_convert_script_converts_and_reports_user_errors_without_a_traceback(tmp_path, reacher_pixel_dataset):
    old = write_format1(reacher_pixel_dataset, tmp_path / "old")
    env = dict(os.environ)

    def run(*args):
        return subprocess.run([sys.executable, str(ROOT / "scripts" / "convert_dataset.py"), *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    done = run(f"path={old}", f"out={tmp_path / 'new'}")
    assert done.returncode == 0 and f"converted {old} to format 2 in {tmp_path / 'new'}: 3 shards" in done.stdout
    missing = run(f"path={tmp_path / 'nowhere'}")
    assert missing.returncode == 2 and "error: dataset directory" in missing.stderr and "Traceback" not in missing.stderr
    usage = run(str(old))
    assert usage.returncode == 2 and "is not of the form key=value" in usage.stderr and "Traceback" not in usage.stderr
