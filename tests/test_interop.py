"""Datasets shared with stable-worldmodel: our format -> its HDF5 layout -> our format, array for array.

The HDF5 side is read and written with h5py alone, in the layout of stable-worldmodel 0.1.1's
``HDF5Writer`` / ``HDF5Dataset`` (stable_worldmodel/data/formats/hdf5.py): no stable-worldmodel needed.
"""

import json

import h5py
import numpy as np
import pytest
from jepa_wm.data.interop import MANIFEST_ATTR, export_hdf5, import_hdf5, read_hdf5_layout
from jepa_wm.data.storage import DatasetError, load_manifest, verify_shards

from jepa_wm.errors import ConfigError
from tests.test_training import run_script


def dataset_arrays(path):
    """Every array of every shard of a dataset (after the checks a load makes), by shard and array name."""
    manifest = load_manifest(path)
    return {shard: {key: np.load(array.path, allow_pickle=False) for key, array in arrays.items()}
            for shard, arrays in verify_shards(path, manifest).items()}


def test_round_trip_gives_the_same_dataset(reacher_pixel_dataset, tmp_path):
    h5 = export_hdf5(reacher_pixel_dataset, tmp_path / "reacher.h5", physics_split=(2, 2))
    back = import_hdf5(h5, tmp_path / "back")

    original, imported = dataset_arrays(reacher_pixel_dataset), dataset_arrays(back)
    assert sorted(original) == sorted(imported) == ["shard-00000", "shard-00001", "shard-00002"]
    for shard, arrays in original.items():
        assert sorted(arrays) == sorted(imported[shard])
        for key, array in arrays.items():
            assert imported[shard][key].dtype == array.dtype, (shard, key)
            np.testing.assert_array_equal(imported[shard][key], array, err_msg=f"{shard}/{key}")
    # Identical manifest: same header (so same header seal), same file checksums, same shard seals.
    assert json.loads((back / "manifest.json").read_text()) == json.loads(
        (reacher_pixel_dataset / "manifest.json").read_text())
    assert not list(back.glob(".*partial"))


def test_export_has_stable_worldmodels_hdf5_layout(reacher_pixel_dataset, tmp_path):
    """The columns HDF5Dataset reads: one row per frame, episodes back to back, ep_len/ep_offset, and the
    action taken from each frame in its row (NaN in an episode's last row, as World.collect writes it)."""
    h5 = export_hdf5(reacher_pixel_dataset, tmp_path / "reacher.h5", physics_split=(2, 2))
    episodes = {key: np.concatenate([arrays[key] for _, arrays in sorted(dataset_arrays(reacher_pixel_dataset).items())])
                for key in ("action", "pixels", "state", "physics", "position")}
    with h5py.File(h5, "r") as file:
        assert file["ep_len"].dtype == np.int32 and file["ep_offset"].dtype == np.int64
        np.testing.assert_array_equal(file["ep_len"][:], [31] * 6)
        np.testing.assert_array_equal(file["ep_offset"][:], np.arange(6) * 31)
        assert file["pixels"].shape == (186, 64, 64, 3) and file["pixels"].dtype == np.uint8
        assert file["pixels"].chunks == (1, 64, 64, 3) and file["pixels"].compression is None
        assert file["action"].shape == (186, 2) and file["action"].dtype == np.float32
        assert file["observation"].dtype == np.float32
        for episode in range(6):
            rows = slice(episode * 31, episode * 31 + 31)
            action = file["action"][rows]
            np.testing.assert_array_equal(action[:30], episodes["action"][episode])
            assert np.isnan(action[30]).all()
            np.testing.assert_array_equal(file["pixels"][rows], episodes["pixels"][episode])
            np.testing.assert_array_equal(file["observation"][rows], episodes["state"][episode])
            np.testing.assert_array_equal(file["qpos"][rows], episodes["physics"][episode][:, :2])
            np.testing.assert_array_equal(file["qvel"][rows], episodes["physics"][episode][:, 2:4])
            np.testing.assert_array_equal(file["episode_idx"][rows], episode)
            np.testing.assert_array_equal(file["step_idx"][rows], np.arange(31))
        assert json.loads(file.attrs[MANIFEST_ATTR])["episodes"] == 6
    layout = read_hdf5_layout(h5)
    assert layout["columns"]["pixels"] == ((64, 64, 3), np.dtype(np.uint8))


def write_foreign_h5(path, lengths, columns):
    """An HDF5 file as stable-worldmodel's HDF5Writer writes it (no jepa-wm manifest)."""
    with h5py.File(path, "w", libver="latest") as file:
        for name, values in columns.items():
            file.create_dataset(name, data=values, maxshape=(None, *values.shape[1:]), chunks=(1, *values.shape[1:]))
        file.create_dataset("ep_len", data=np.asarray(lengths, np.int32), maxshape=(None,))
        file.create_dataset("ep_offset", data=np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
                            maxshape=(None,))


def test_import_of_a_file_stable_worldmodel_wrote(reacher_pixel_dataset, reacher_env_cfg, tmp_path, capsys,
                                                  monkeypatch):
    """Without our manifest: the header comes from the env config, physics from qpos + qvel (float64 there),
    position from a named column, the NaN action of each last row is dropped, and longer episodes are cropped."""
    source = {key: np.concatenate([arrays[key] for _, arrays in sorted(dataset_arrays(reacher_pixel_dataset).items())])
              for key in ("action", "pixels", "physics", "position")}
    lengths = [31, 31, 31, 31, 31, 33]  # the last episode ran 2 steps longer
    rows = {key: [] for key in ("pixels", "action", "qpos", "qvel", "finger_pos")}
    for episode, length in enumerate(lengths):
        extra = length - 31
        rows["pixels"].append(np.concatenate([source["pixels"][episode], source["pixels"][episode][:extra]]))
        action = np.concatenate([source["action"][episode], source["action"][episode][:extra],
                                 np.full((1, 2), np.nan, np.float32)])
        rows["action"].append(action)
        physics = np.concatenate([source["physics"][episode], source["physics"][episode][:extra]]).astype(np.float64)
        rows["qpos"].append(physics[:, :2])
        rows["qvel"].append(physics[:, 2:])
        rows["finger_pos"].append(np.concatenate([source["position"][episode], source["position"][episode][:extra]]))
    h5 = tmp_path / "theirs.h5"
    write_foreign_h5(h5, lengths, {key: np.concatenate(values) for key, values in rows.items()})

    with pytest.raises(ConfigError, match="pass env="):
        import_hdf5(h5, tmp_path / "no-env", steps_per_episode=30, columns={"position": "finger_pos"})
    with pytest.raises(DatasetError, match="equal length"):
        import_hdf5(h5, tmp_path / "uneven", env=reacher_env_cfg, columns={"position": "finger_pos"})
    with pytest.raises(ConfigError, match="position"):
        import_hdf5(h5, tmp_path / "no-position", env=reacher_env_cfg, steps_per_episode=30)

    out = import_hdf5(h5, tmp_path / "ours", env=reacher_env_cfg, steps_per_episode=30, episodes_per_shard=4,
                      columns={"position": "finger_pos"})
    # What the errors advise is what the command takes: steps_per_episode=, episodes_per_shard=, columns=
    code, stderr = run_script("convert_dataset", [f"path={h5}", f"out={tmp_path / 'by-command'}", "from=hdf5",
                                                  "env=reacher-easy", "steps_per_episode=30", "episodes_per_shard=4",
                                                  "columns={position: finger_pos}"], capsys, monkeypatch, tmp_path)
    assert code == 0, stderr[-2000:]
    assert dataset_arrays(tmp_path / "by-command").keys() == dataset_arrays(out).keys()
    manifest = load_manifest(out)
    assert manifest["observations"] == {"pixels": [64, 64, 3]}
    assert manifest["steps_per_episode"] == 30 and manifest["episodes"] == 6
    assert manifest["imported_from"]["columns"]["physics"] == ["qpos", "qvel"]
    imported = {key: np.concatenate([arrays[key] for _, arrays in sorted(dataset_arrays(out).items())])
                for key in ("action", "pixels", "physics", "position", "episode")}
    np.testing.assert_array_equal(imported["episode"], np.arange(6))
    for key in ("action", "pixels", "physics", "position"):
        np.testing.assert_array_equal(imported[key], source[key], err_msg=key)


def test_export_refuses_a_path_that_is_no_h5_file(reacher_pixel_dataset, tmp_path):
    with pytest.raises(ConfigError, match=".h5"):
        export_hdf5(reacher_pixel_dataset, tmp_path / "reacher.npz")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("x")
    h5 = export_hdf5(reacher_pixel_dataset, tmp_path / "reacher.h5")
    with pytest.raises(ConfigError, match="not empty"):
        import_hdf5(h5, tmp_path / "full")
