"""Collection: determinism, atomic shards, resumption after interruption or a kill."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from data.collect import collect
from data.dataset import load_episodes
from data.storage import DatasetError, load_manifest, read_shard

ROOT = Path(__file__).resolve().parents[1]
OU = {"name": "ou", "theta": 0.15, "sigma": 0.3}


def small_collection(env_cfg, out, seed=0, workers=1, episodes=4, steps=10):
    return collect(env_cfg, out, episodes=episodes, steps_per_episode=steps, policy=OU, seed=seed,
                   workers=workers, episodes_per_shard=2, progress=False)


def all_arrays(path):
    manifest = load_manifest(path)
    return {name: read_shard(path, name, manifest) for name in sorted(manifest["shards"])}


def assert_same_data(first, second):
    a, b = all_arrays(first), all_arrays(second)
    assert a.keys() == b.keys()
    for name in a:
        for key in a[name]:
            assert np.array_equal(a[name][key], b[name][key]), (name, key)


def test_manifest_describes_the_dataset(reacher_pixel_dataset):
    manifest = load_manifest(reacher_pixel_dataset)
    assert manifest["episodes"] == 6 and manifest["steps_per_episode"] == 20 and manifest["seed"] == 0
    assert manifest["observations"] == {"pixels": [64, 64, 3], "state": [6]}
    assert manifest["action"] == {"dim": 2, "low": [-1.0, -1.0], "high": [1.0, 1.0]}
    assert manifest["policy"] == OU and manifest["env"]["name"] == "reacher-easy"
    assert sorted(manifest["shards"]) == ["shard-00000.npz", "shard-00001.npz", "shard-00002.npz"]


def test_same_seed_gives_identical_data_for_any_worker_count(tmp_path, reacher_env_cfg):
    one = small_collection(reacher_env_cfg, tmp_path / "one", workers=1)
    two = small_collection(reacher_env_cfg, tmp_path / "two", workers=2)
    assert_same_data(one, two)


def test_different_seeds_give_different_data(tmp_path, reacher_env_cfg):
    a = all_arrays(small_collection(reacher_env_cfg, tmp_path / "a", seed=0))
    b = all_arrays(small_collection(reacher_env_cfg, tmp_path / "b", seed=1))
    assert not np.array_equal(a["shard-00000.npz"]["pixels"], b["shard-00000.npz"]["pixels"])


def test_rerun_recollects_only_missing_shards_and_removes_partial_files(tmp_path, reacher_env_cfg):
    path = small_collection(reacher_env_cfg, tmp_path / "data")
    reference = all_arrays(path)
    untouched = (path / "shard-00000.npz").stat().st_mtime_ns
    (path / "shard-00001.npz").unlink()
    (path / ".shard-00001.npz.abc.partial").write_bytes(b"half a shard")
    small_collection(reacher_env_cfg, path)
    assert not list(path.glob("*.partial"))
    assert (path / "shard-00000.npz").stat().st_mtime_ns == untouched
    rerun = all_arrays(path)
    for key in reference["shard-00001.npz"]:
        assert np.array_equal(reference["shard-00001.npz"][key], rerun["shard-00001.npz"][key])


def test_rerun_with_other_settings_refuses_to_mix_datasets(tmp_path, reacher_env_cfg):
    path = small_collection(reacher_env_cfg, tmp_path / "data")
    with pytest.raises(DatasetError, match="seed: on disk 0, requested 1"):
        small_collection(reacher_env_cfg, path, seed=1)


def test_killed_collection_resumes_to_the_same_dataset(tmp_path, reacher_env_cfg):
    out = tmp_path / "killed"
    command = [sys.executable, str(ROOT / "scripts" / "collect.py"), "episodes=8", "steps_per_episode=15",
               "episodes_per_shard=2", "workers=2", "progress=false", f"out={out}"]
    process = subprocess.Popen(command, cwd=ROOT, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = out / "manifest.json"
    deadline = time.time() + 180
    while time.time() < deadline and process.poll() is None:
        if manifest.is_file() and json.loads(manifest.read_text())["shards"]:
            break
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished_before = len(json.loads(manifest.read_text())["shards"])
    assert finished_before < 4, "the collection finished before it could be killed; make it longer"

    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, timeout=300)
    episodes = load_episodes(out, "pixels")
    assert episodes.num_episodes == 8
    assert not list(out.glob(".*.partial"))
    reference = collect(reacher_env_cfg, tmp_path / "reference", episodes=8, steps_per_episode=15, policy=OU,
                        seed=0, workers=1, episodes_per_shard=2, progress=False)
    assert_same_data(out, reference)
