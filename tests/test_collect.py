"""Collection: determinism, atomic shards, resumption after interruption or a kill."""

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from jepa_wm.data.collect import collect
from jepa_wm.data.dataset import load_episodes
from jepa_wm.data.storage import MANIFEST_NAME, DatasetError, header_sha256, load_manifest, shard_file

ROOT = Path(__file__).resolve().parents[1]
OU = {"name": "ou", "theta": 0.15, "sigma": 0.3}


def small_collection(env_cfg, out, seed=0, workers=1, episodes=4, steps=10, **settings):
    return collect(env_cfg, out, episodes=episodes, steps_per_episode=steps, policy=OU, seed=seed,
                   workers=workers, episodes_per_shard=2, progress=False, **settings)


def all_arrays(path):
    """Every array of every shard, as its .npy file stores it, by shard name and array name."""
    manifest = load_manifest(path)
    return {name: {key: np.load(path / shard_file(name, key), allow_pickle=False) for key in record["files"]}
            for name, record in sorted(manifest["shards"].items())}


def assert_same_data(first, second):
    a, b = all_arrays(first), all_arrays(second)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].keys() == b[name].keys(), name
        for key in a[name]:
            assert a[name][key].dtype == b[name][key].dtype, (name, key)
            assert a[name][key].tobytes() == b[name][key].tobytes(), (name, key)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory, reacher_env_cfg):
    """4 reacher-easy episodes of 10 steps, seed 0; tests that only read it share it."""
    return small_collection(reacher_env_cfg, tmp_path_factory.mktemp("small"))


def test_manifest_describes_the_dataset(reacher_pixel_dataset, reacher_env_cfg):
    manifest = load_manifest(reacher_pixel_dataset)
    assert manifest["format_version"] == 2 and manifest["header_sha256"] == header_sha256(manifest)
    assert manifest["episodes"] == 6 and manifest["steps_per_episode"] == 30 and manifest["seed"] == 0
    assert manifest["episodes_per_shard"] == 2 and manifest["action_repeat"] == 2
    assert manifest["observations"] == {"pixels": [64, 64, 3], "state": [4]}  # goal-free: no to_target
    assert manifest["physics_size"] == 4 and manifest["position_size"] == 2  # qpos+qvel; fingertip x-y
    assert manifest["action"] == {"dim": 2, "low": [-1.0, -1.0], "high": [1.0, 1.0]}
    # Every variation strength is 0 here, so the manifest leaves the key out (a dataset from before it is the same task).
    assert "variation" in reacher_env_cfg and "variation" not in manifest["env"]
    # how to plan in the task is not a property of its data (and may change without collecting again)
    assert "planning_cost" in reacher_env_cfg and "planning_cost" not in manifest["env"]
    assert manifest["policy"] == OU and manifest["env"] == {k: v for k, v in reacher_env_cfg.items()
                                                            if k not in ("variation", "planning_cost")}
    assert manifest["shards"].keys() == {"shard-00000", "shard-00001", "shard-00002"}
    assert [manifest["shards"][name]["episodes"] for name in sorted(manifest["shards"])] == [[0, 2], [2, 4], [4, 6]]
    assert manifest["shards"]["shard-00000"]["files"].keys() == {"action", "state", "physics", "position", "pixels",
                                                                 "episode"}


def test_shards_hold_every_array_with_its_dtype(reacher_pixel_dataset):
    arrays = all_arrays(reacher_pixel_dataset)["shard-00001"]
    assert {key: (value.shape, value.dtype.name) for key, value in arrays.items()} == {
        "action": ((2, 30, 2), "float32"),
        "state": ((2, 31, 4), "float32"),
        "physics": ((2, 31, 4), "float32"),
        "position": ((2, 31, 2), "float32"),
        "pixels": ((2, 31, 64, 64, 3), "uint8"),
        "episode": ((2,), "int64"),
    }
    assert arrays["episode"].tolist() == [2, 3]


def test_state_only_collection_stores_no_pixels(reacher_state_dataset):
    manifest = load_manifest(reacher_state_dataset)
    assert manifest["observations"] == {"state": [4]}
    assert "pixels" not in all_arrays(reacher_state_dataset)["shard-00000"]
    assert not list(reacher_state_dataset.glob("*.pixels.npy"))


def test_pixel_and_state_collections_with_one_seed_hold_the_same_trajectories(reacher_pixel_dataset,
                                                                               reacher_state_dataset):
    pixels, states = all_arrays(reacher_pixel_dataset), all_arrays(reacher_state_dataset)
    for name in pixels:
        for key in ("action", "state", "physics", "position"):
            assert np.array_equal(pixels[name][key], states[name][key]), (name, key)


def test_dataset_files_are_readable_like_any_other_new_file(reacher_pixel_dataset):
    umask = os.umask(0o022)
    os.umask(umask)
    for path in [reacher_pixel_dataset / MANIFEST_NAME, *reacher_pixel_dataset.glob("shard-*.npy")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name


def test_same_seed_gives_identical_data_for_any_worker_count(tmp_path, reacher_env_cfg, small_dataset):
    one = small_dataset
    again = small_collection(reacher_env_cfg, tmp_path / "again", workers=1)
    two = small_collection(reacher_env_cfg, tmp_path / "two", workers=2)
    assert_same_data(one, again)
    assert_same_data(one, two)


def test_different_seeds_give_different_data(tmp_path, reacher_env_cfg):
    a = all_arrays(small_collection(reacher_env_cfg, tmp_path / "a", seed=0, episodes=2))
    b = all_arrays(small_collection(reacher_env_cfg, tmp_path / "b", seed=1, episodes=2))
    for key in ("pixels", "action", "physics"):
        assert not np.array_equal(a["shard-00000"][key], b["shard-00000"][key]), key


def test_episodes_of_one_collection_differ_from_each_other(reacher_pixel_dataset):
    episodes = load_episodes(reacher_pixel_dataset, "pixels")
    first = [episodes.episode(index) for index in range(episodes.num_episodes)]
    assert len(np.unique([episode["obs"][0].ravel() for episode in first], axis=0)) == episodes.num_episodes
    assert len(np.unique([episode["actions"][0] for episode in first], axis=0)) == episodes.num_episodes


def test_rerun_recollects_a_shard_with_a_deleted_file_identically_and_keeps_the_others(tmp_path, reacher_env_cfg):
    """What the error for a corrupt shard file tells people to do: delete it and rerun the same collect."""
    path = small_collection(reacher_env_cfg, tmp_path / "data")
    reference = all_arrays(path)
    untouched = (path / "shard-00000.pixels.npy").stat().st_mtime_ns
    (path / "shard-00001.physics.npy").unlink()
    small_collection(reacher_env_cfg, path)
    assert (path / "shard-00000.pixels.npy").stat().st_mtime_ns == untouched
    assert load_episodes(path, "pixels").num_episodes == 4
    rerun = all_arrays(path)
    for key in reference["shard-00001"]:
        assert np.array_equal(reference["shard-00001"][key], rerun["shard-00001"][key]), key


def test_rerun_recollects_a_shard_written_but_not_yet_recorded(tmp_path, reacher_env_cfg, small_dataset):
    """A kill between a shard's rename and the manifest update leaves a file the manifest does not list."""
    path = small_collection(reacher_env_cfg, tmp_path / "data")
    reference = all_arrays(path)
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    del manifest["shards"]["shard-00001"]
    (path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="incomplete: 2 of 4 episodes"):
        load_episodes(path, "pixels")
    small_collection(reacher_env_cfg, path)
    assert load_manifest(path)["shards"].keys() == reference.keys()
    assert load_episodes(path, "pixels").num_episodes == 4
    assert_same_data(path, small_dataset)


def test_rerun_removes_partial_files_left_by_a_killed_writer(tmp_path, reacher_env_cfg):
    path = small_collection(reacher_env_cfg, tmp_path / "data", episodes=2)
    (path / ".shard-00001.pixels.npy.x1y2.partial").write_bytes(b"half a shard")
    (path / ".manifest.json.z3.partial").write_bytes(b'{"half": ')
    small_collection(reacher_env_cfg, path, episodes=2)
    assert sorted(file.name for file in path.iterdir()) == ["manifest.json", *(
        f"shard-00000.{key}.npy" for key in ("action", "episode", "physics", "pixels", "position", "state"))]


@pytest.mark.parametrize("change,message", [
    ({"seed": 1}, "seed: on disk 0, requested 1"),
    ({"steps": 12}, "steps_per_episode: on disk 10, requested 12"),
    ({"episodes": 6}, "episodes: on disk 4, requested 6"),
    ({"image_size": 32}, "env: on disk"),
])
def test_rerun_with_other_settings_refuses_to_mix_datasets(small_dataset, reacher_env_cfg, change, message):
    path = small_dataset  # 4 episodes of 10 steps, seed 0
    env_cfg = {**reacher_env_cfg, "image_size": change.pop("image_size", 64)}
    with pytest.raises(DatasetError, match=f"already holds a different dataset \\({message}"):
        small_collection(env_cfg, path, **{"episodes": 4, "steps": 10, **change})


def test_collect_script_reports_a_mismatched_directory_without_a_traceback(small_dataset):
    command = [sys.executable, str(ROOT / "scripts" / "collect.py"), "episodes=4", "steps_per_episode=10",
               "episodes_per_shard=2", "seed=5", f"out={small_dataset}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert f"error: {small_dataset} already holds a different dataset (seed: on disk 0, requested 5)" in result.stderr
    assert "Traceback" not in result.stderr


def test_killed_collection_resumes_to_the_same_dataset(tmp_path, reacher_env_cfg):
    out = tmp_path / "killed"
    command = [sys.executable, str(ROOT / "scripts" / "collect.py"), "env=reacher-easy", "seed=0", "episodes=8",
               "steps_per_episode=15", "episodes_per_shard=2", "policy.name=ou", "policy.theta=0.15",
               "policy.sigma=0.3", "workers=2", "progress=false", f"out={out}"]
    process = subprocess.Popen(command, cwd=ROOT, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    manifest = out / MANIFEST_NAME

    def finished_shards():
        return json.loads(manifest.read_text())["shards"] if manifest.is_file() else {}

    deadline = time.time() + 180
    while time.time() < deadline and process.poll() is None and not finished_shards():
        time.sleep(0.05)
    assert process.poll() is None, f"collection ended before it could be killed: {process.stderr.read()}"
    os.killpg(process.pid, signal.SIGKILL)  # the script and its spawned workers
    process.wait()
    process.stderr.close()
    finished_before = len(finished_shards())
    assert 1 <= finished_before < 4, "the kill must land mid-collection; make the collection longer"
    with pytest.raises(DatasetError, match="incomplete"):
        load_episodes(out, "pixels")

    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, timeout=300)
    episodes = load_episodes(out, "pixels")
    assert episodes.num_episodes == 8 and episodes.episode(7)["obs"].shape[0] == 16
    assert not list(out.glob("*.partial")) and not list(out.glob(".*"))
    reference = collect(reacher_env_cfg, tmp_path / "reference", episodes=8, steps_per_episode=15, policy=OU,
                        seed=0, workers=1, episodes_per_shard=2, progress=False)
    assert_same_data(out, reference)


def test_a_finished_collection_of_every_task_is_reused_by_the_same_command(tmp_path):
    """finger-spin's env config holds a mapping with integer keys (joint_symmetry {2: 2}) that the manifest, being
    JSON, stores as strings: the same collection asked again, or resumed after a kill, was refused as "a different
    dataset". Every task's settings must compare equal to themselves read back from the manifest."""
    from jepa_wm.config import load_group, to_dict
    from jepa_wm.data.collect import dataset_header

    for path in sorted((ROOT / "configs" / "env").glob("*.yaml")):
        header = dataset_header(to_dict(load_group("env", path.stem)), 3, OU, 0, 1, 1)
        assert json.loads(json.dumps(header)) == header, path.stem
    finger = to_dict(load_group("env", "finger-spin"))
    first = small_collection(finger, tmp_path / "finger", episodes=1, steps=3)
    written = (first / MANIFEST_NAME).read_text()
    assert small_collection(finger, tmp_path / "finger", episodes=1, steps=3) == first  # reused, not refused
    assert (first / MANIFEST_NAME).read_text() == written
