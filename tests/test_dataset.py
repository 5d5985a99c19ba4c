"""Windowed datasets, the data module, and clear errors for broken dataset files."""

import json
import shutil

import numpy as np
import pytest
import torch

from data.datamodule import TrajectoryDataModule
from data.dataset import TrajectoryWindowDataset, load_episodes, normalize_actions, split_episodes
from data.storage import DatasetError, MANIFEST_NAME, file_sha256, load_manifest, read_shard


@pytest.fixture
def dataset_copy(tmp_path, reacher_pixel_dataset):
    return shutil.copytree(reacher_pixel_dataset, tmp_path / "copy")


def test_windows_have_history_plus_horizon_frames_and_the_actions_between(reacher_pixel_dataset):
    episodes = load_episodes(reacher_pixel_dataset, "pixels")
    windows = TrajectoryWindowDataset(episodes, [0, 1], num_frames=4, frameskip=1)
    assert len(windows) == 2 * (20 - 3 + 1)
    item = windows[0]
    assert item["obs"].shape == (4, 64, 64, 3) and item["obs"].dtype == torch.uint8
    assert item["actions"].shape == (3, 2) and item["physics"].shape == (4, 4) and item["position"].shape == (4, 2)


def test_frameskip_takes_every_kth_frame_and_concatenates_skipped_actions(reacher_pixel_dataset):
    episodes = load_episodes(reacher_pixel_dataset, "pixels")
    windows = TrajectoryWindowDataset(episodes, [2], num_frames=3, frameskip=3)
    item = windows[1]  # episode 2, starting at step 1
    assert np.array_equal(item["obs"].numpy(), episodes.observations[2, [1, 4, 7]])
    assert item["actions"].shape == (2, 6)
    assert np.array_equal(item["actions"][1].numpy(), episodes.actions[2, 4:7].reshape(-1))


def test_window_longer_than_episodes_is_rejected(reacher_pixel_dataset):
    episodes = load_episodes(reacher_pixel_dataset, "pixels")
    with pytest.raises(ValueError, match="longer than the dataset's 20-step episodes"):
        TrajectoryWindowDataset(episodes, [0], num_frames=6, frameskip=5)


def test_split_is_by_episode_deterministic_and_disjoint():
    train, val = split_episodes(20, 0.2, seed=0)
    assert len(val) == 4 and not set(train) & set(val) and sorted([*train, *val]) == list(range(20))
    again_train, again_val = split_episodes(20, 0.2, seed=0)
    assert np.array_equal(val, again_val)


def test_actions_are_normalised_to_unit_box():
    actions = np.array([[0.0, 10.0], [2.0, 20.0], [1.0, 15.0]], np.float32)
    normalised = normalize_actions(actions, low=[0.0, 10.0], high=[2.0, 20.0])
    assert np.allclose(normalised, [[-1, -1], [1, 1], [0, 0]])


def test_datamodule_yields_batches_split_by_episode(reacher_pixel_dataset):
    module = TrajectoryDataModule(str(reacher_pixel_dataset), "pixels", num_frames=3, batch_size=4, val_fraction=0.34)
    module.setup()
    batch = next(iter(module.train_dataloader()))
    assert batch["obs"].shape == (4, 3, 64, 64, 3) and batch["obs"].dtype == torch.uint8
    assert batch["actions"].shape == (4, 2, 2)
    assert module.obs_shape == (64, 64, 3) and module.action_dim == 2
    train_episodes = set(module.train_set.index[:, 0])
    assert not train_episodes & set(module.val_set.index[:, 0])


def test_state_dataset_loads_state_observations(reacher_state_dataset):
    episodes = load_episodes(reacher_state_dataset, "state")
    assert episodes.observations.shape == (6, 21, 6)
    with pytest.raises(DatasetError, match="not 'pixels'"):
        load_episodes(reacher_state_dataset, "pixels")


def test_corrupt_shard_is_named(dataset_copy):
    shard = dataset_copy / "shard-00001.npz"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\x00" * 64
    shard.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="shard-00001.npz is corrupt"):
        load_episodes(dataset_copy, "pixels")


def test_truncated_shard_is_named_even_when_its_checksum_is_updated(dataset_copy):
    shard = dataset_copy / "shard-00000.npz"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    manifest = json.loads((dataset_copy / MANIFEST_NAME).read_text())
    manifest["shards"]["shard-00000.npz"]["sha256"] = file_sha256(shard)
    (dataset_copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="shard-00000.npz cannot be read"):
        load_episodes(dataset_copy, "pixels")


def test_shard_with_mismatched_shape_is_named(dataset_copy):
    shard = dataset_copy / "shard-00002.npz"
    arrays = read_shard(dataset_copy, "shard-00002.npz", load_manifest(dataset_copy))
    arrays["action"] = arrays["action"][:, :-1]
    np.savez_compressed(shard, **arrays)
    manifest = json.loads((dataset_copy / MANIFEST_NAME).read_text())
    manifest["shards"]["shard-00002.npz"]["sha256"] = file_sha256(shard)
    (dataset_copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match=r"shard-00002.npz: 'action' has shape \(2, 19, 2\), manifest says \(2, 20, 2\)"):
        load_episodes(dataset_copy, "pixels")


def test_missing_shard_and_missing_manifest_say_what_to_do(dataset_copy, tmp_path):
    (dataset_copy / "shard-00001.npz").unlink()
    with pytest.raises(DatasetError, match="shard-00001.npz is listed .* but missing; rerun the same collect"):
        load_episodes(dataset_copy, "pixels")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="is not a jepa-wm dataset"):
        load_episodes(tmp_path / "empty", "pixels")
    with pytest.raises(DatasetError, match="does not exist"):
        load_episodes(tmp_path / "nowhere", "pixels")
