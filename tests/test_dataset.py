"""Windowed datasets read lazily from disk, the data module, and clear errors for broken dataset files."""

import json
import os
import pickle
import shutil

import numpy as np
import pytest
import torch
from jepa_wm.data.actions import to_model_range as normalize_actions
from jepa_wm.data.datamodule import ResumableShuffle, TrajectoryDataModule
from jepa_wm.data.dataset import TrajectoryWindowDataset, collate_windows, load_episodes, split_episodes
from jepa_wm.data.storage import MANIFEST_NAME, DatasetError, file_sha256, sealed, shard_file
from jepa_wm.errors import ConfigError
from torch.utils.data import DataLoader


@pytest.fixture
def dataset_copy(tmp_path, reacher_pixel_dataset):
    """A private copy of the 6-episode, 30-step pixel dataset (shards of 2 episodes) to break."""
    return shutil.copytree(reacher_pixel_dataset, tmp_path / "copy")


def raw_arrays(path):
    """Every array of the dataset exactly as its shard files store them, episodes concatenated in order."""
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    shards = sorted(manifest["shards"])
    keys = manifest["shards"][shards[0]]["files"]
    return {key: np.concatenate([np.load(path / shard_file(shard, key), allow_pickle=False) for shard in shards])
            for key in keys}


def reference_windows(raw, obs_type, episodes, num_frames, frameskip):
    """Every window of ``episodes`` computed directly from in-memory arrays, as format 1 served them."""
    span = (num_frames - 1) * frameskip
    actions = normalize_actions(raw["action"], low=[-1.0, -1.0], high=[1.0, 1.0])  # reacher's box
    windows = {"obs": [], "actions": [], "physics": [], "position": []}
    for episode in episodes:
        for start in range(raw["action"].shape[1] - span + 1):
            frames = start + frameskip * np.arange(num_frames)
            windows["obs"].append(raw[obs_type][episode, frames])
            windows["actions"].append(actions[episode, start:frames[-1]].reshape(num_frames - 1, -1))
            windows["physics"].append(raw["physics"][episode, frames])
            windows["position"].append(raw["position"][episode, frames])
    return {key: np.stack(value) for key, value in windows.items()}


def test_episodes_load_in_order_with_actions_in_the_unit_box(reacher_pixel_dataset):
    episodes = load_episodes(reacher_pixel_dataset, "pixels")
    assert episodes.num_episodes == 6 and episodes.steps_per_episode == 30
    assert episodes.obs_shape == (64, 64, 3) and episodes.action_size == 2 and episodes.physics_size == 4
    raw = raw_arrays(reacher_pixel_dataset)
    third = episodes.episode(3)
    assert third["obs"].shape == (31, 64, 64, 3) and third["obs"].dtype == np.uint8
    assert third["actions"].shape == (30, 2) and third["actions"].dtype == np.float32
    assert np.abs(third["actions"]).max() <= 1.0
    assert np.array_equal(third["obs"], raw["pixels"][3]) and np.array_equal(third["physics"], raw["physics"][3])


@pytest.mark.parametrize("obs_type,num_frames,frameskip", [("pixels", 5, 5), ("pixels", 3, 1), ("state", 4, 3)])
def test_windows_equal_an_in_memory_reference(reacher_pixel_dataset, obs_type, num_frames, frameskip):
    """Every window, item by item and batched through a DataLoader, equals the format-1 computation."""
    raw = raw_arrays(reacher_pixel_dataset)
    windows = TrajectoryWindowDataset(load_episodes(reacher_pixel_dataset, obs_type), [1, 4, 5], num_frames, frameskip)
    reference = reference_windows(raw, obs_type, [1, 4, 5], num_frames, frameskip)
    assert len(windows) == len(reference["obs"])
    loader = DataLoader(windows, batch_size=7, shuffle=False, collate_fn=collate_windows)
    batched = {key: torch.cat([batch[key] for batch in loader]).numpy() for key in reference}
    for key, expected in reference.items():
        assert batched[key].dtype == expected.dtype and np.array_equal(batched[key], expected), key
        for item in (0, len(windows) // 2, len(windows) - 1):
            assert np.array_equal(windows[item][key].numpy(), expected[item]), (key, item)


def test_windows_have_history_plus_horizon_frames_and_the_actions_between(reacher_pixel_dataset):
    episodes = load_episodes(reacher_pixel_dataset, "pixels")
    windows = TrajectoryWindowDataset(episodes, [0, 1], num_frames=4, frameskip=1)
    assert len(windows) == 2 * (30 - 3 + 1)  # every start whose window fits in the episode
    item = windows[0]
    assert item["obs"].shape == (4, 64, 64, 3) and item["obs"].dtype == torch.uint8
    assert item["actions"].shape == (3, 2) and item["actions"].dtype == torch.float32
    assert item["physics"].shape == (4, 4) and item["position"].shape == (4, 2)
    assert windows.index.tolist()[:2] == [[0, 0], [0, 1]] and windows.index.tolist()[-1] == [1, 27]
    assert np.array_equal(windows[-1]["obs"].numpy(), windows[len(windows) - 1]["obs"].numpy())
    with pytest.raises(IndexError):
        windows[len(windows)]


def test_state_windows_are_float_vectors(reacher_state_dataset):
    episodes = load_episodes(reacher_state_dataset, "state")
    assert episodes.obs_shape == (4,)
    item = TrajectoryWindowDataset(episodes, [0], num_frames=3, frameskip=2)[0]
    assert item["obs"].shape == (3, 4) and item["obs"].dtype == torch.float32
    assert item["actions"].shape == (2, 4)


def test_frameskip_takes_every_kth_frame_and_concatenates_skipped_actions(reacher_pixel_dataset):
    raw = raw_arrays(reacher_pixel_dataset)
    windows = TrajectoryWindowDataset(load_episodes(reacher_pixel_dataset, "pixels"), [2], num_frames=3, frameskip=3)
    assert len(windows) == 30 - 6 + 1
    item = windows[1]  # episode 2, starting at step 1: frames 1, 4, 7
    assert np.array_equal(item["obs"].numpy(), raw["pixels"][2, [1, 4, 7]])
    assert np.array_equal(item["physics"].numpy(), raw["physics"][2, [1, 4, 7]])
    assert np.array_equal(item["position"].numpy(), raw["position"][2, [1, 4, 7]])
    # model step 0 covers env actions 1, 2, 3 (frame 1 -> 4); step 1 covers actions 4, 5, 6 (frame 4 -> 7)
    actions = normalize_actions(raw["action"][2], low=[-1.0, -1.0], high=[1.0, 1.0])  # reacher's box
    assert item["actions"].shape == (2, 6)
    assert np.array_equal(item["actions"][0].numpy(), np.concatenate(actions[1:4]))
    assert np.array_equal(item["actions"][1].numpy(), np.concatenate(actions[4:7]))


def test_last_window_ends_on_the_final_frame(reacher_pixel_dataset):
    windows = TrajectoryWindowDataset(load_episodes(reacher_pixel_dataset, "pixels"), [5], num_frames=7, frameskip=5)
    assert len(windows) == 1  # spans all 30 steps
    assert np.array_equal(windows[0]["obs"].numpy(), raw_arrays(reacher_pixel_dataset)["pixels"][5, [0, 5, 10, 15, 20, 25, 30]])


def test_window_longer_than_episodes_is_rejected(reacher_pixel_dataset):
    episodes = load_episodes(reacher_pixel_dataset, "pixels")
    with pytest.raises(ValueError, match="8 frames with frameskip 5 spans 35 steps, longer than the dataset's 30-step"):
        TrajectoryWindowDataset(episodes, [0], num_frames=8, frameskip=5)


def test_a_window_reads_only_its_own_frames(reacher_pixel_dataset, monkeypatch):
    """Lazy reading: one window costs its 3 pixel frames plus a few hundred bytes of vectors, nothing more."""
    episodes = load_episodes(reacher_pixel_dataset, "pixels")
    reads, real_preadv = [], os.preadv

    def counting_preadv(fd, buffers, offset):
        reads.append((os.readlink(f"/proc/self/fd/{fd}"), offset, sum(memoryview(b).nbytes for b in buffers)))
        return real_preadv(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", counting_preadv)
    TrajectoryWindowDataset(episodes, [3], num_frames=3, frameskip=4)[2]  # episode 3 (shard 1, row 1), frames 2, 6, 10
    pixels = str(reacher_pixel_dataset / "shard-00001.pixels.npy")
    frame, offset = 64 * 64 * 3, 128  # bytes per frame; np.save's header
    expected = {(pixels, offset + (31 + step) * frame, frame) for step in (2, 6, 10)}
    assert {read for read in reads if read[0] == pixels} == expected
    others = [read for read in reads if read[0] != pixels]
    assert {os.path.basename(read[0]) for read in others} == {"shard-00001.action.npy", "shard-00001.physics.npy",
                                                              "shard-00001.position.npy"}
    assert sum(size for *_, size in others) == 8 * 8 + 9 * 16 + 9 * 8  # actions 2-9, physics/position 2-10


def test_windows_are_served_when_the_other_episodes_files_are_gone(dataset_copy):
    """Nothing is read at setup beyond headers: after it, only the windows' own shard files are needed."""
    module = TrajectoryDataModule(str(dataset_copy), "pixels", num_frames=3, frameskip=2, batch_size=4, val_fraction=0.34)
    module.setup()
    assert module.episodes._fds == {}  # no file is held open before the first batch
    val_shards = {f"shard-{episode // 2:05d}" for episode in module.val_set.episode_ids}
    for file in dataset_copy.glob("shard-*.npy"):
        if file.name.split(".")[0] not in val_shards:
            file.unlink()
    batches = list(module.val_dataloader())
    assert sum(len(batch["obs"]) for batch in batches) == len(module.val_set)
    with pytest.raises(DatasetError, match="disappeared after the dataset was verified"):
        next(iter(module.train_dataloader()))


def test_two_workers_give_the_same_batches_and_the_main_process_opens_nothing(reacher_pixel_dataset):
    def batches(workers):
        module = TrajectoryDataModule(str(reacher_pixel_dataset), "pixels", num_frames=5, frameskip=3,
                                      batch_size=8, val_fraction=0.5, num_workers=workers)
        module.setup()
        return module, [batch for batch in module.val_dataloader()]

    _, in_process = batches(0)
    module, in_workers = batches(2)
    assert len(in_process) == len(in_workers) == 8  # 3 episodes x 19 windows, 8 per batch
    for one, other in zip(in_process, in_workers):
        assert one.keys() == other.keys() and all(torch.equal(one[key], other[key]) for key in one)
    assert module.episodes._fds == {}  # the workers opened the files, each for itself


def test_a_pickled_dataset_carries_no_data_and_no_open_files(reacher_pixel_dataset):
    """What a spawned DataLoader worker receives: the file layout, never descriptors or frames."""
    windows = TrajectoryWindowDataset(load_episodes(reacher_pixel_dataset, "pixels"), range(6), 5, 5)
    first = windows[3]
    assert [len(fds) for fds in windows.episodes._fds.values()] == [4]  # pixels, action, physics, position of shard 1
    payload = pickle.dumps(windows)
    assert len(payload) < 20_000  # the dataset's pixels alone are 6 x 31 x 12 KiB = 1.5 MiB
    copy = pickle.loads(payload)
    assert copy.episodes._fds == {}
    assert all(torch.equal(first[key], copy[3][key]) for key in first)


def test_the_default_collate_function_gives_the_same_batches(reacher_pixel_dataset):
    windows = TrajectoryWindowDataset(load_episodes(reacher_pixel_dataset, "pixels"), [0, 2], 3, 2)
    plain = next(iter(DataLoader(windows, batch_size=5)))
    stacked = next(iter(DataLoader(windows, batch_size=5, collate_fn=collate_windows)))
    assert all(torch.equal(plain[key], stacked[key]) for key in stacked)


def test_split_is_by_episode_deterministic_and_disjoint():
    train, val = split_episodes(20, 0.2, seed=0)
    assert len(val) == 4 and not set(train) & set(val) and sorted([*train, *val]) == list(range(20))
    again_train, again_val = split_episodes(20, 0.2, seed=0)
    assert np.array_equal(train, again_train) and np.array_equal(val, again_val)
    assert not np.array_equal(val, split_episodes(20, 0.2, seed=1)[1])
    assert val.tolist() == [2, 4, 6, 19]  # the split of every earlier version for this seed


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
    manifest = load_episodes(reacher_pixel_dataset, "pixels").manifest
    assert module.describe() == {"config": manifest["env"], "action_low": [-1.0, -1.0], "action_high": [1.0, 1.0],
                                 "frameskip": 2, "dataset": str(reacher_pixel_dataset),
                                 "dataset_sha256": manifest["header_sha256"]}


def batches_from(done, windows=10, batch=3, rank=0, world=1, count=8):
    """``count`` batches of window indices drawn from the stream when ``done`` batches were trained."""
    sampler = ResumableShuffle(range(windows), batch, seed=7, rank=rank, world_size=world, batches_done=lambda: done)
    batches, position = [], done
    while len(batches) < count:
        loader = DataLoader(range(windows), batch_size=batch, sampler=sampler, drop_last=True)
        for batch_ in loader:  # one iterator per epoch, as the trainer makes them
            batches.append(batch_.tolist())
            position += 1
            if len(batches) == count:
                break
        sampler.batches_done = lambda position=position: position
    return batches


def test_the_training_stream_goes_on_from_the_batches_trained_in_passes_of_seeded_permutations():
    whole = batches_from(0, count=12)  # 10 windows, batches of 3: 3 batches per pass (the 10th window left out)
    for done in (1, 2, 4, 7):
        assert batches_from(done, count=12 - done) == whole[done:]  # a resumed run draws what comes next
    passes = [sorted(sum(whole[i:i + 3], [])) for i in range(0, 12, 3)]
    assert all(len(set(windows)) == 9 for windows in passes)  # no window twice in a pass
    assert len({tuple(sum(whole[i:i + 3], [])) for i in range(0, 12, 3)}) == 4  # each pass its own order
    shares = [sum(batches_from(0, windows=12, batch=2, rank=rank, world=2, count=3), []) for rank in (0, 1)]
    assert sorted(shares[0] + shares[1]) == list(range(12))  # two processes: disjoint shares of one pass


def test_datamodule_over_states_yields_float_batches(reacher_state_dataset):
    module = TrajectoryDataModule(str(reacher_state_dataset), "state", num_frames=4, batch_size=8, val_fraction=0.2)
    module.setup()
    batch = next(iter(module.train_dataloader()))
    assert batch["obs"].shape == (8, 4, 4) and batch["obs"].dtype == torch.float32
    assert batch["actions"].shape == (8, 3, 2)


def test_wrong_observation_type_names_the_dataset_and_what_it_has(reacher_state_dataset):
    with pytest.raises(DatasetError, match=rf"dataset {reacher_state_dataset} has observations \['state'\], not 'pixels'"):
        load_episodes(reacher_state_dataset, "pixels")


# ------------------------------------------------------------------------------- broken shard files
def zero_middle_bytes(file):
    """Overwrite 64 bytes in the middle of a file, as a bad disk or a bad copy would."""
    data = bytearray(file.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\x00" * 64
    file.write_bytes(bytes(data))


def patch_manifest_checksum(path, shard, key):
    """Record the current checksum of one shard file (and reseal its record), so only the checks after the
    checksum can fail."""
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    manifest["shards"][shard]["files"][key] = file_sha256(path / shard_file(shard, key))
    manifest["shards"][shard] = sealed(manifest, shard, manifest["shards"][shard])
    (path / MANIFEST_NAME).write_text(json.dumps(manifest))


def test_corrupt_shard_file_is_named(dataset_copy):
    zero_middle_bytes(dataset_copy / "shard-00001.pixels.npy")
    with pytest.raises(DatasetError, match="shard-00001.pixels.npy is corrupt or was modified .* rerun the same collect"):
        load_episodes(dataset_copy, "pixels")


def test_shard_file_with_a_broken_header_is_named_even_when_its_checksum_is_updated(dataset_copy):
    file = dataset_copy / "shard-00001.physics.npy"
    file.write_bytes(b"\x00" * 16 + file.read_bytes()[16:])
    patch_manifest_checksum(dataset_copy, "shard-00001", "physics")
    with pytest.raises(DatasetError, match="shard-00001.physics.npy cannot be read .* delete it and rerun"):
        load_episodes(dataset_copy, "pixels")


def test_truncated_shard_file_is_named(dataset_copy):
    file = dataset_copy / "shard-00000.pixels.npy"
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    with pytest.raises(DatasetError, match="shard-00000.pixels.npy has 380992 bytes where its header needs 761984: "
                                           "it is truncated"):
        load_episodes(dataset_copy, "pixels")


def test_shard_file_with_mismatched_shape_is_named(dataset_copy):
    file = dataset_copy / "shard-00002.action.npy"
    np.save(file, np.load(file)[:, :-1])
    patch_manifest_checksum(dataset_copy, "shard-00002", "action")
    with pytest.raises(DatasetError, match=r"shard-00002.action.npy: 'action' has shape \(2, 29, 2\), manifest says \(2, 30, 2\)"):
        load_episodes(dataset_copy, "pixels")


@pytest.mark.parametrize("key", ["physics", "episode"])
def test_missing_shard_file_says_to_recollect_it(dataset_copy, key):
    (dataset_copy / f"shard-00001.{key}.npy").unlink()
    with pytest.raises(DatasetError, match=f"shard-00001.{key}.npy is listed .* but missing; rerun the same collect"):
        load_episodes(dataset_copy, "pixels")


def test_interrupted_collection_is_not_loaded_as_a_smaller_dataset(dataset_copy):
    manifest = json.loads((dataset_copy / MANIFEST_NAME).read_text())
    del manifest["shards"]["shard-00002"]
    (dataset_copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match=f"dataset {dataset_copy} is incomplete: 4 of 6 episodes .* rerun"):
        load_episodes(dataset_copy, "pixels")


def test_missing_or_broken_manifest_names_the_directory(dataset_copy, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=f"{tmp_path / 'empty'} is not a jepa-wm dataset"):
        load_episodes(tmp_path / "empty", "pixels")
    with pytest.raises(DatasetError, match=f"dataset directory {tmp_path / 'nowhere'} does not exist"):
        load_episodes(tmp_path / "nowhere", "pixels")
    (dataset_copy / MANIFEST_NAME).write_text('{"format_version": 2, "shards"')
    with pytest.raises(DatasetError, match="manifest.json is not valid JSON"):
        load_episodes(dataset_copy, "pixels")


# ------------------------------------------------------------------------------------- several datasets
def test_several_datasets_serve_their_episodes_one_after_another(reacher_pixel_dataset, reacher_second_seed_dataset):
    first, second = load_episodes(reacher_pixel_dataset, "pixels"), load_episodes(reacher_second_seed_dataset, "pixels")
    both = load_episodes([str(reacher_pixel_dataset), reacher_second_seed_dataset], "pixels")
    assert both.num_episodes == 6 + 4 and both.paths == (reacher_pixel_dataset, reacher_second_seed_dataset)
    for index in range(both.num_episodes):
        part, local = (first, index) if index < 6 else (second, index - 6)
        for key, values in both.episode(index).items():
            np.testing.assert_array_equal(values, part.episode(local)[key])
    # one batch from both: each window is its own dataset's
    windows = both.read_windows([5, 6, 9], [3, 0, 7], 4, 2)
    np.testing.assert_array_equal(windows["obs"][1], second.read_windows([0], [0], 4, 2)["obs"][0])
    np.testing.assert_array_equal(windows["obs"][2], second.read_windows([3], [7], 4, 2)["obs"][0])
    np.testing.assert_array_equal(windows["actions"][0], first.read_windows([5], [3], 4, 2)["actions"][0])


def test_datasets_that_share_episodes_are_refused(reacher_pixel_dataset, tmp_path):
    """A seed's episode i is the same whatever the dataset's size: a second dataset of the same seed would put
    the same episodes on both sides of the train/val split."""
    copy = shutil.copytree(reacher_pixel_dataset, tmp_path / "copy")
    for paths in ([reacher_pixel_dataset, copy], [reacher_pixel_dataset, reacher_pixel_dataset]):
        with pytest.raises(DatasetError, match="same seed and policy.*another seed="):
            load_episodes(paths, "pixels")


def test_datasets_of_different_tasks_are_refused_naming_what_differs(reacher_pixel_dataset, tmp_path,
                                                                    reacher_env_cfg):
    from jepa_wm.data.collect import collect

    other = collect({**reacher_env_cfg, "action_repeat": 3}, tmp_path / "repeat-3", episodes=2, steps_per_episode=30,
                    policy={"name": "random"}, seed=2, workers=1, progress=False)
    with pytest.raises(DatasetError, match=r"different tasks.*\(env, action_repeat differ\)"):
        load_episodes([reacher_pixel_dataset, other], "pixels")
    with pytest.raises(ConfigError, match="names no dataset"):
        load_episodes([], "pixels")


def test_the_datamodule_over_several_datasets_records_them_and_splits_their_episodes(reacher_pixel_dataset,
                                                                                      reacher_second_seed_dataset):
    module = TrajectoryDataModule([reacher_pixel_dataset, reacher_second_seed_dataset], "pixels", num_frames=7,
                                  frameskip=5, batch_size=2, val_fraction=0.2, seed=0)
    module.setup()
    assert len(module.train_set) + len(module.val_set) == 10  # one window per 30-step episode
    single = TrajectoryDataModule(reacher_pixel_dataset, "pixels", num_frames=7, frameskip=5)
    single.setup()
    described = module.describe()
    assert described["dataset"] == [str(reacher_pixel_dataset.resolve()), str(reacher_second_seed_dataset.resolve())]
    assert described["dataset_sha256"] != single.describe()["dataset_sha256"]  # resume tells the data apart
    assert single.describe()["dataset"] == str(reacher_pixel_dataset.resolve())
