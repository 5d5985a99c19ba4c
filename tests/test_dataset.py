"""Windowed datasets, the data module, and clear errors for broken dataset files."""

import json
import shutil

import numpy as np
import pytest
import torch

from data.datamodule import TrajectoryDataModule
from data.dataset import TrajectoryWindowDataset, load_episodes, normalize_actions, split_episodes
from data.storage import MANIFEST_NAME, DatasetError, file_sha256, load_manifest, read_shard


@pytest.fixture
def dataset_copy(tmp_path, reacher_pixel_dataset):
    """A private copy of the 6-episode, 20-step pixel dataset (shards of 2 episodes) to break."""
    return shutil.copytree(reacher_pixel_dataset, tmp_path / "copy")


def raw_episode(path, episode):
    """The arrays of one episode exactly as its shard stores them."""
    name = f"shard-{episode // 2:05d}.npz"
    arrays = read_shard(path, name, load_manifest(path))
    return {key: value[episode % 2] for key, value in arrays.items()}


def patch_manifest_checksum(path, name):
    """Record the current checksum of shard ``name``, so only the checks after the checksum can fail."""
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    manifest["shards"][name]["sha256"] = file_sha256(path / name)
    (path / MANIFEST_NAME).write_text(json.dumps(manifest))


def test_episodes_load_in_order_with_actions_in_the_unit_box(reacher_pixel_dataset):
    episodes = load_episodes(reacher_pixel_dataset, "pixels")
    assert episodes.observations.shape == (6, 21, 64, 64, 3) and episodes.observations.dtype == np.uint8
    assert episodes.actions.shape == (6, 20, 2) and episodes.actions.dtype == np.float32
    assert episodes.physics.shape == (6, 21, 4) and episodes.position.shape == (6, 21, 2)
    assert np.abs(episodes.actions).max() <= 1.0
    assert np.array_equal(episodes.observations[3], raw_episode(reacher_pixel_dataset, 3)["pixels"])


def test_windows_have_history_plus_horizon_frames_and_the_actions_between(reacher_pixel_dataset):
    episodes = load_episodes(reacher_pixel_dataset, "pixels")
    windows = TrajectoryWindowDataset(episodes, [0, 1], num_frames=4, frameskip=1)
    assert len(windows) == 2 * (20 - 3 + 1)  # every start whose window fits in the episode
    item = windows[0]
    assert item["obs"].shape == (4, 64, 64, 3) and item["obs"].dtype == torch.uint8
    assert item["actions"].shape == (3, 2) and item["actions"].dtype == torch.float32
    assert item["physics"].shape == (4, 4) and item["position"].shape == (4, 2)


def test_state_windows_are_float_vectors(reacher_state_dataset):
    episodes = load_episodes(reacher_state_dataset, "state")
    assert episodes.observations.shape == (6, 21, 6)
    item = TrajectoryWindowDataset(episodes, [0], num_frames=3, frameskip=2)[0]
    assert item["obs"].shape == (3, 6) and item["obs"].dtype == torch.float32
    assert item["actions"].shape == (2, 4)


def test_frameskip_takes_every_kth_frame_and_concatenates_skipped_actions(reacher_pixel_dataset):
    episodes = load_episodes(reacher_pixel_dataset, "pixels")
    raw = raw_episode(reacher_pixel_dataset, 2)
    windows = TrajectoryWindowDataset(episodes, [2], num_frames=3, frameskip=3)
    assert len(windows) == 20 - 6 + 1
    item = windows[1]  # episode 2, starting at step 1: frames 1, 4, 7
    assert np.array_equal(item["obs"].numpy(), raw["pixels"][[1, 4, 7]])
    assert np.array_equal(item["physics"].numpy(), raw["physics"][[1, 4, 7]])
    assert np.array_equal(item["position"].numpy(), raw["position"][[1, 4, 7]])
    # model step 0 covers env actions 1, 2, 3 (frame 1 -> 4); step 1 covers actions 4, 5, 6 (frame 4 -> 7)
    actions = normalize_actions(raw["action"], low=[-1.0, -1.0], high=[1.0, 1.0])  # reacher's box
    assert item["actions"].shape == (2, 6)
    assert np.array_equal(item["actions"][0].numpy(), np.concatenate(actions[1:4]))
    assert np.array_equal(item["actions"][1].numpy(), np.concatenate(actions[4:7]))


def test_last_window_ends_on_the_final_frame(reacher_pixel_dataset):
    episodes = load_episodes(reacher_pixel_dataset, "pixels")
    windows = TrajectoryWindowDataset(episodes, [5], num_frames=5, frameskip=5)  # spans all 20 steps
    assert len(windows) == 1
    assert np.array_equal(windows[0]["obs"].numpy(), episodes.observations[5, [0, 5, 10, 15, 20]])


def test_window_longer_than_episodes_is_rejected(reacher_pixel_dataset):
    episodes = load_episodes(reacher_pixel_dataset, "pixels")
    with pytest.raises(ValueError, match="6 frames with frameskip 5 spans 25 steps, longer than the dataset's 20-step"):
        TrajectoryWindowDataset(episodes, [0], num_frames=6, frameskip=5)


def test_split_is_by_episode_deterministic_and_disjoint():
    train, val = split_episodes(20, 0.2, seed=0)
    assert len(val) == 4 and not set(train) & set(val) and sorted([*train, *val]) == list(range(20))
    again_train, again_val = split_episodes(20, 0.2, seed=0)
    assert np.array_equal(train, again_train) and np.array_equal(val, again_val)
    assert not np.array_equal(val, split_episodes(20, 0.2, seed=1)[1])


def test_split_keeps_at_least_one_episode_on_each_side():
    assert len(split_episodes(3, 0.1, seed=0)[1]) == 1
    with pytest.raises(ValueError, match="leaves no training episodes"):
        split_episodes(2, 0.9, seed=0)


def test_actions_are_normalised_to_unit_box_for_an_asymmetric_spec():
    actions = np.array([[0.0, -3.0], [2.0, 1.0], [1.0, -1.0], [0.5, 0.0]], np.float32)
    normalised = normalize_actions(actions, low=[0.0, -3.0], high=[2.0, 1.0])
    assert normalised.dtype == np.float32
    assert np.allclose(normalised, [[-1, -1], [1, 1], [0, 0], [-0.5, 0.5]])


def test_datamodule_yields_train_and_val_batches_split_by_episode(reacher_pixel_dataset):
    module = TrajectoryDataModule(str(reacher_pixel_dataset), "pixels", num_frames=3, frameskip=2, batch_size=4,
                                  val_fraction=0.34)
    module.setup("fit")
    assert module.obs_shape == (64, 64, 3) and module.action_dim == 4 and module.physics_size == 4
    for loader in (module.train_dataloader(), module.val_dataloader()):
        batch = next(iter(loader))
        assert batch["obs"].shape == (4, 3, 64, 64, 3) and batch["obs"].dtype == torch.uint8
        assert batch["actions"].shape == (4, 2, 4) and batch["actions"].dtype == torch.float32
        assert batch["physics"].shape == (4, 3, 4) and batch["position"].shape == (4, 3, 2)
    train_episodes, val_episodes = set(module.train_set.index[:, 0]), set(module.val_set.index[:, 0])
    assert len(val_episodes) == 2 and len(train_episodes) == 4 and not train_episodes & val_episodes
    assert module.describe()["frameskip"] == 2 and module.describe()["config"]["name"] == "reacher-easy"


def test_datamodule_over_states_yields_float_batches(reacher_state_dataset):
    module = TrajectoryDataModule(str(reacher_state_dataset), "state", num_frames=4, batch_size=8, val_fraction=0.2)
    module.setup()
    batch = next(iter(module.train_dataloader()))
    assert batch["obs"].shape == (8, 4, 6) and batch["obs"].dtype == torch.float32
    assert batch["actions"].shape == (8, 3, 2)


def test_wrong_observation_type_names_the_dataset_and_what_it_has(reacher_state_dataset):
    with pytest.raises(DatasetError, match=rf"dataset {reacher_state_dataset} has observations \['state'\], not 'pixels'"):
        load_episodes(reacher_state_dataset, "pixels")


def zero_middle_bytes(shard):
    """Overwrite 64 bytes in the middle of a file, as a bad disk or a bad copy would."""
    data = bytearray(shard.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\x00" * 64
    shard.write_bytes(bytes(data))


def test_corrupt_shard_is_named(dataset_copy):
    zero_middle_bytes(dataset_copy / "shard-00001.npz")
    with pytest.raises(DatasetError, match="shard-00001.npz is corrupt or was modified .* rerun the same collect"):
        load_episodes(dataset_copy, "pixels")


def test_corrupt_shard_is_named_even_when_its_checksum_is_updated(dataset_copy):
    zero_middle_bytes(dataset_copy / "shard-00001.npz")
    patch_manifest_checksum(dataset_copy, "shard-00001.npz")
    with pytest.raises(DatasetError, match="shard-00001.npz cannot be read"):
        load_episodes(dataset_copy, "pixels")


def test_truncated_shard_is_named(dataset_copy):
    shard = dataset_copy / "shard-00000.npz"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(DatasetError, match="shard-00000.npz is corrupt"):
        load_episodes(dataset_copy, "pixels")
    patch_manifest_checksum(dataset_copy, "shard-00000.npz")
    with pytest.raises(DatasetError, match="shard-00000.npz cannot be read"):
        load_episodes(dataset_copy, "pixels")


def test_shard_with_mismatched_shape_is_named(dataset_copy):
    shard = dataset_copy / "shard-00002.npz"
    arrays = read_shard(dataset_copy, "shard-00002.npz", load_manifest(dataset_copy))
    arrays["action"] = arrays["action"][:, :-1]
    np.savez_compressed(shard, **arrays)
    patch_manifest_checksum(dataset_copy, "shard-00002.npz")
    with pytest.raises(DatasetError, match=r"shard-00002.npz: 'action' has shape \(2, 19, 2\), manifest says \(2, 20, 2\)"):
        load_episodes(dataset_copy, "pixels")


def test_shard_without_an_array_is_named(dataset_copy):
    shard = dataset_copy / "shard-00002.npz"
    arrays = read_shard(dataset_copy, "shard-00002.npz", load_manifest(dataset_copy))
    del arrays["physics"]
    np.savez_compressed(shard, **arrays)
    patch_manifest_checksum(dataset_copy, "shard-00002.npz")
    with pytest.raises(DatasetError, match="shard-00002.npz has no 'physics' array"):
        load_episodes(dataset_copy, "pixels")


def test_missing_shard_says_to_recollect_it(dataset_copy):
    (dataset_copy / "shard-00001.npz").unlink()
    with pytest.raises(DatasetError, match="shard-00001.npz is listed .* but missing; rerun the same collect"):
        load_episodes(dataset_copy, "pixels")


def test_interrupted_collection_is_not_loaded_as_a_smaller_dataset(dataset_copy):
    manifest = json.loads((dataset_copy / MANIFEST_NAME).read_text())
    del manifest["shards"]["shard-00002.npz"]
    (dataset_copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match=f"dataset {dataset_copy} is incomplete: 4 of 6 episodes .* rerun"):
        load_episodes(dataset_copy, "pixels")


def test_missing_or_broken_manifest_names_the_directory(dataset_copy, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=f"{tmp_path / 'empty'} is not a jepa-wm dataset"):
        load_episodes(tmp_path / "empty", "pixels")
    with pytest.raises(DatasetError, match=f"dataset directory {tmp_path / 'nowhere'} does not exist"):
        load_episodes(tmp_path / "nowhere", "pixels")
    (dataset_copy / MANIFEST_NAME).write_text('{"format_version": 1, "shards"')
    with pytest.raises(DatasetError, match="manifest.json is not valid JSON"):
        load_episodes(dataset_copy, "pixels")
