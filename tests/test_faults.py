"""Nothing lost, nothing leaked: what a careless user, a crash, a signal or a hostile file can do to runs and datasets.

Every test here reproduces one way work was lost, success was claimed falsely, or a file from someone else
steered a run, and checks that it now ends with exit 2 (or 143 for SIGTERM) and one line, that nothing a
user wrote changed, and that nothing from the environment reached an artifact.
"""

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import jepa_wm.data.collect
import numpy as np
import pytest
import torch
from jepa_wm.data.collect import collect
from jepa_wm.data.dataset import load_episodes
from jepa_wm.data.storage import MANIFEST_NAME, DatasetError, header_sha256, sealed
from jepa_wm.planning.experiment import run_plan

from jepa_wm.config import compose
from jepa_wm.errors import ConfigError
from jepa_wm.files import DirectoryLock, write_json_atomic
from jepa_wm.pipeline import train_config, train_from_config
from tests.conftest import OU_POLICY
from tests.test_training import ROOT, checkpoint_step, metric_rows, run_script, tiny_run, train


def snapshot(directory: Path) -> dict:
    """Every file under a directory with its bytes: what 'nothing changed' means. W&B's service process
    appends to its own debug logs in a run directory after the run has ended: it is stopped first, so that
    the snapshot is of a finished directory."""
    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()
    return {str(path.relative_to(directory)): path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()}


def small_collection(env_cfg, out, **settings):
    options = dict(episodes=2, steps_per_episode=12, policy=OU_POLICY, seed=0, workers=1, episodes_per_shard=1,
                   progress=False)
    return collect(env_cfg, out, **{**options, **settings})


def reseal(directory: Path, edit) -> None:
    """Edit a manifest and seal it again, header and shard records, as a hostile dataset would be."""
    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    edit(manifest)
    manifest["header_sha256"] = header_sha256(manifest)
    manifest["shards"] = {name: sealed(manifest, name, {k: v for k, v in record.items() if k != "seal"})
                          for name, record in manifest["shards"].items()}
    write_json_atomic(directory / MANIFEST_NAME, manifest)


# ------------------------------------------------------------------------------------------ run history
def test_a_fresh_start_never_overwrites_checkpoints_or_history_of_a_run_without_last_ckpt(
        tmp_path, reacher_pixel_dataset, capsys, monkeypatch):
    run = train(reacher_pixel_dataset, tmp_path / "run", steps=8, every=4)
    (run / "checkpoints" / "last.ckpt").unlink()  # deleted to save space; best.ckpt and the history stay
    before = snapshot(run)
    for extra, message in ((["trainer.precision=bf17"], "trainer.precision=bf17: refused"),
                           ([], "holds checkpoints of an earlier run (best.ckpt) but no last.ckpt")):
        code, stderr = run_script("train", tiny_run(reacher_pixel_dataset, run, *extra, steps=4), capsys, monkeypatch,
                                  tmp_path)
        assert code == 2 and message in stderr and "Traceback" not in stderr, stderr[-2000:]
        assert snapshot(run) == before


def test_a_failed_start_keeps_the_traces_of_an_earlier_start_and_a_real_one_replaces_them(
        tmp_path, reacher_pixel_dataset, capsys, monkeypatch):
    run = tmp_path / "run"
    (run / "csv").mkdir(parents=True)
    (run / "csv" / "metrics.csv").write_text("step,train/loss\n0,9.0\n1,8.0\n")  # a start killed before saving
    (run / "notes.txt").write_text("mine")
    before = snapshot(run)
    code, stderr = run_script("train", tiny_run(reacher_pixel_dataset, run, "trainer.precision=bf17"), capsys,
                              monkeypatch, tmp_path)
    assert code == 2 and snapshot(run) == before and not (run / "wandb").exists()
    train(reacher_pixel_dataset, run, steps=4, every=4)
    assert all(float(row["train/loss"]) != 9.0 for row in metric_rows(run) if row.get("train/loss"))
    assert (run / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=["SIGTERM", "SIGHUP", "Ctrl-C"])
def test_a_stop_signal_saves_the_current_step_says_how_to_go_on_and_the_run_resumes(stop, tmp_path,
                                                                                      reacher_pixel_dataset):
    out = tmp_path / "run"
    # No validation before the end: whatever is saved at SIGTERM was saved because of it.
    script = [sys.executable, str(ROOT / "scripts" / "train.py")]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    process = subprocess.Popen([*script, *tiny_run(reacher_pixel_dataset, out, steps=4000, every=4000)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 300
    while not (out / "config.yaml").is_file() and process.poll() is None and time.time() < deadline:
        time.sleep(0.1)  # config.yaml is written once training really starts
    time.sleep(1.0)
    process.send_signal(stop)
    code, stderr = process.wait(timeout=300), process.stderr.read()
    assert code == (130 if stop == signal.SIGINT else 143), stderr[-2000:]
    lines = [line for line in stderr.splitlines() if line.startswith("interrupted:" if stop == signal.SIGINT else "terminated:")]
    step = checkpoint_step(out / "checkpoints" / "last.ckpt")
    assert 0 < step < 4000 and len(lines) == 1 and f"holds step {step}" in lines[0] and "resume=true" in lines[0]
    assert "Traceback" not in stderr
    resumed = subprocess.run([*script, *tiny_run(reacher_pixel_dataset, out, "resume=true", steps=step + 4, every=4000)],
                             capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert checkpoint_step(out / "checkpoints" / "last.ckpt") == step + 4


def test_a_full_disk_fails_with_one_line_and_leaves_no_temporary(tmp_path, reacher_pixel_dataset, capsys, monkeypatch):
    import jepa_wm.files

    real_save = torch.save

    def save_on_a_full_disk(obj, file, *args, **kwargs):
        real_save(obj, file, *args, **kwargs)
        with open(file, "r+b") as handle:  # torch.save's own words for a full disk, after half a file
            handle.truncate(100)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(torch, "save", save_on_a_full_disk)
    monkeypatch.setattr(jepa_wm.files, "free_bytes", lambda directory: 0)
    code, stderr = run_script("train", tiny_run(reacher_pixel_dataset, tmp_path / "run", steps=4, every=2), capsys,
                              monkeypatch, tmp_path)
    assert code == 2 and "No space left on device" in stderr and "Traceback" not in stderr, stderr[-2000:]
    assert not [path for path in tmp_path.rglob("*.partial")]


# --------------------------------------------------------------------------------------------- datasets
def test_a_second_writer_of_a_directory_is_refused_while_the_first_works(tmp_path, reacher_env_cfg,
                                                                          reacher_pixel_dataset):
    out = tmp_path / "data"
    out.mkdir()
    with DirectoryLock(out, "a dataset"):
        with pytest.raises(ConfigError, match="is in use: another process is writing"):
            small_collection(reacher_env_cfg, out)
    assert list(out.iterdir()) == []
    run = tmp_path / "run"
    run.mkdir()
    with DirectoryLock(run, "a training run"):
        with pytest.raises(ConfigError, match="is in use"):
            train(reacher_pixel_dataset, run, steps=2, every=2)
    assert list(run.iterdir()) == []
    report = tmp_path / "report"
    report.mkdir()
    with DirectoryLock(report, "a planning report"):
        with pytest.raises(ConfigError, match="is in use"):
            run_plan(compose("plan", ["env=reacher-easy", "methods=[random]", "baselines=true", "episodes=1",
                                      f"out={report}", "videos=0", "progress=false"]))
    assert list(report.iterdir()) == []


def test_two_collections_started_together_into_one_directory_leave_one_sound_dataset(tmp_path, reacher_env_cfg):
    out = tmp_path / "together"
    command = [sys.executable, str(ROOT / "scripts" / "collect.py"), "env=reacher-easy", "episodes=4",
               "steps_per_episode=12", "episodes_per_shard=1", "workers=1", "progress=false", f"out={out}"]
    processes = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
                 for _ in range(2)]
    results = [(process.wait(timeout=300), process.stderr.read()) for process in processes]
    for code, stderr in results:
        assert code == 0 or (code == 2 and "is in use" in stderr), stderr[-2000:]
    reference = small_collection(reacher_env_cfg, tmp_path / "alone", episodes=4)
    together, alone = load_episodes(out, "pixels"), load_episodes(reference, "pixels")
    assert together.num_episodes == 4
    for episode in range(4):
        assert np.array_equal(together.episode(episode)["obs"], alone.episode(episode)["obs"])


def test_a_writer_at_work_is_named_as_such_before_its_files_are_judged(tmp_path, reacher_env_cfg,
                                                                      reacher_pixel_dataset):
    """A collection's first shard before its manifest, a run's first checkpoint: a second writer started then
    is told the directory is in use (not that it holds strangers or another run), and writes nothing."""
    busy = tmp_path / "busy"
    (busy / "checkpoints").mkdir(parents=True)
    (busy / "shard-00000.pixels.npy").write_bytes(b"being written")
    (busy / "checkpoints" / "best.ckpt").write_bytes(b"being written")
    before = snapshot(busy)
    with DirectoryLock(busy, "a dataset"):
        with pytest.raises(ConfigError, match="is in use"):
            small_collection(reacher_env_cfg, busy)
        with pytest.raises(ConfigError, match="is in use"):
            train(reacher_pixel_dataset, busy)
    assert snapshot(busy) == before


def test_collection_and_conversion_never_delete_or_write_among_a_users_files(tmp_path, reacher_env_cfg,
                                                                               reacher_pixel_dataset, capsys, monkeypatch):
    dataset = small_collection(reacher_env_cfg, tmp_path / "dataset")
    (dataset / ".thesis.tex.partial").write_text("two years of work")
    (dataset / ".manifest.json.x1y2.partial").write_text("left by a killed writer")
    small_collection(reacher_env_cfg, dataset)  # a rerun of a finished collection
    assert (dataset / ".thesis.tex.partial").read_text() == "two years of work"
    assert not (dataset / ".manifest.json.x1y2.partial").exists()

    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    before = snapshot(home)
    for script, argv in (("collect", [f"out={home}", "episodes=1"]),
                         ("convert_dataset", [f"path={reacher_pixel_dataset}", f"out={home}"])):
        code, stderr = run_script(script, argv, capsys, monkeypatch, tmp_path)
        assert code == 2 and "Traceback" not in stderr, stderr[-2000:]
        assert snapshot(home) == before


def test_a_collection_whose_first_shard_failed_can_be_corrected(tmp_path, reacher_env_cfg, monkeypatch):
    out = tmp_path / "data"
    real = jepa_wm.data.collect._collect_shard

    def fails_once(job):
        monkeypatch.setattr(jepa_wm.data.collect, "_collect_shard", real)
        raise RuntimeError("the first shard failed")

    monkeypatch.setattr(jepa_wm.data.collect, "_collect_shard", fails_once)
    with pytest.raises(RuntimeError, match="the first shard failed"):
        small_collection(reacher_env_cfg, out)
    small_collection(reacher_env_cfg, out, policy={"name": "random"})  # the corrected command
    assert load_episodes(out, "pixels").manifest["policy"] == {"name": "random"}
    with pytest.raises(DatasetError, match="already holds a different dataset"):  # once collected, never mixed
        small_collection(reacher_env_cfg, out)


def test_a_shard_record_copied_in_from_another_dataset_is_refused(tmp_path, reacher_env_cfg):
    first = small_collection(reacher_env_cfg, tmp_path / "first", seed=0)
    second = small_collection(reacher_env_cfg, tmp_path / "second", seed=1)
    manifest = json.loads((first / MANIFEST_NAME).read_text())
    foreign = json.loads((second / MANIFEST_NAME).read_text())["shards"]["shard-00001"]
    for path in second.glob("shard-00001.*.npy"):
        shutil.copy(path, first / path.name)
    manifest["shards"]["shard-00001"] = foreign
    (first / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="shard-00001 with a record that does not belong to this dataset"):
        load_episodes(first, "pixels")


def test_resume_refuses_another_dataset_of_the_same_task(tmp_path, reacher_env_cfg, reacher_pixel_dataset):
    other = collect(reacher_env_cfg, tmp_path / "other", episodes=6, steps_per_episode=30, policy=OU_POLICY, seed=5,
                    workers=1, episodes_per_shard=2, progress=False)
    run = train(reacher_pixel_dataset, tmp_path / "run", steps=4, every=4)
    before = snapshot(run)
    with pytest.raises(ConfigError, match="the dataset .data.path holds another dataset"):
        train(other, run, "resume=true", steps=8, every=4)
    assert snapshot(run) == before


# ------------------------------------------------------------------------------------------------ leaks
@pytest.mark.parametrize("override", [
    "out=ELSEWHERE", "wandb.name=${oc.env:SECRET_TOKEN}", "model.encoder.name=${oc.env:SECRET_TOKEN}",
    "+trainer.default_root_dir=/tmp",
    # YAML escapes that decode to an interpolation once the config reads them
    'model.encoder.name="\\u0024{oc.env:SECRET_TOKEN}"', 'model.encoder.name="\\x24{oc.env:SECRET_TOKEN}"',
    'model.encoder.name="\\U00000024{oc.env:SECRET_TOKEN}"', 'model.encoder.channels=[16,"\\u0024{oc.env:SECRET_TOKEN}"]',
    "model.encoder.name={secret: ${oc.env:SECRET_TOKEN}}",
    # the learned cost by name only: no file outside configs/learned_cost/, no setting of it, no interpolation
    "learned_cost=../train", "learned_cost=${oc.env:SECRET_TOKEN}", "learned_cost.steps=1", "learned_cost=nonesuch",
])
def test_a_dataset_cannot_steer_training_or_pull_the_environment_into_a_run(
        override, tmp_path, reacher_pixel_dataset, capsys, monkeypatch):
    dataset = shutil.copytree(reacher_pixel_dataset, tmp_path / "hostile")
    elsewhere = tmp_path / "elsewhere"
    reseal(dataset, lambda manifest: manifest["env"].update(train_overrides=[override.replace("ELSEWHERE", str(elsewhere))]))
    monkeypatch.setenv("SECRET_TOKEN", "hunter2-secret")
    run = tmp_path / "run"
    code, stderr = run_script("train", tiny_run(dataset, run), capsys, monkeypatch, tmp_path)
    assert code == 2 and "env.train_overrides item" in stderr and "refused" in stderr, stderr[-2000:]
    assert not run.exists() and not elsewhere.exists()
    assert "hunter2" not in stderr


def test_a_datasets_model_settings_still_apply(tmp_path, reacher_pixel_dataset):
    dataset = shutil.copytree(reacher_pixel_dataset, tmp_path / "task")
    reseal(dataset, lambda manifest: manifest["env"].update(train_overrides=["model.regularizers.temporal=0.5",
                                                                             "learned_cost=decoded"]))
    arguments = [arg for arg in tiny_run(dataset, tmp_path / "run", steps=2, every=2) if arg != "learned_cost=none"]
    assert train_config(arguments).learned_cost.kind == "decoded"  # the task's planning cost: a file by name
    assert train_config([*arguments, "learned_cost=temporal"]).learned_cost.kind == "temporal"  # the command line wins
    run = train_from_config(train_config([*arguments, "learned_cost=none"]))  # (a cost would add a minute here)
    assert "temporal: 0.5" in (run / "config.yaml").read_text()


# ----------------------------------------------------------------------------------------- checkpoints
def flip_a_weight_byte(path: Path) -> None:
    """Change one byte of the first tensor's data in a checkpoint archive (its CRC-32 is left as it was)."""
    with zipfile.ZipFile(path) as archive:
        entry = next(info for info in archive.infolist() if "/data/" in info.filename)
    data = bytearray(path.read_bytes())
    name_length = int.from_bytes(data[entry.header_offset + 26: entry.header_offset + 28], "little")
    extra_length = int.from_bytes(data[entry.header_offset + 28: entry.header_offset + 30], "little")
    data[entry.header_offset + 30 + name_length + extra_length + 3] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_checkpoint_with_flipped_weight_bytes_is_refused(tmp_path, capsys, monkeypatch):
    from tests.test_evaluation import tiny_pixel_model

    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": tiny_pixel_model().state_dict(), "hyper_parameters": dict(tiny_pixel_model().hparams)}, path)
    flip_a_weight_byte(path)
    code, stderr = run_script("plan", [f"checkpoint={path}", "episodes=1", f"out={tmp_path / 'plan'}"], capsys,
                              monkeypatch, tmp_path)
    assert code == 2 and "fails its CRC-32 check" in stderr and "Traceback" not in stderr, stderr[-2000:]
    assert not (tmp_path / "plan").exists()


def test_a_changed_shipped_model_is_refused_by_its_cards_digest(tmp_path, monkeypatch):
    import jepa_wm.checkpoint
    import jepa_wm.references

    zoo = shutil.copytree(jepa_wm.references.PRETRAINED_DIR, tmp_path / "pretrained")
    monkeypatch.setattr(jepa_wm.references, "PRETRAINED_DIR", zoo)
    checkpoint = torch.load(zoo / "reacher-easy.ckpt", weights_only=True)
    next(iter(checkpoint["state_dict"].values())).mul_(1.01)  # a well-formed file with other weights
    torch.save(checkpoint, zoo / "reacher-easy.ckpt")
    with pytest.raises(Exception, match="does not match the sha256 on its card"):
        jepa_wm.load_world_model("pretrained:reacher-easy")
    jepa_wm.load_world_model("pretrained:point_mass-easy")  # the others are as shipped


@pytest.mark.parametrize("damage, message", [
    (lambda checkpoint: next(iter(checkpoint["state_dict"].values())).fill_(float("nan")), "holds NaN or inf values"),
    (lambda checkpoint: checkpoint.update(global_step="many"), "global_step is 'many', not a step count"),
    (lambda checkpoint: checkpoint["hyper_parameters"].update(obs_shape=[-1]), "its model config cannot build"),
])
def test_a_damaged_checkpoint_is_named_not_loaded(damage, message, tmp_path):
    from jepa_wm import CheckpointError, load_world_model
    from tests.test_evaluation import tiny_pixel_model

    model = tiny_pixel_model()
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), "global_step": 3}
    damage(checkpoint)
    torch.save(checkpoint, tmp_path / "damaged.ckpt")
    with pytest.raises(CheckpointError, match=message):
        load_world_model(tmp_path / "damaged.ckpt")


def test_a_checkpoint_of_an_edited_architecture_names_the_first_mismatched_weight(tmp_path):
    from jepa_wm import CheckpointError, load_world_model
    from tests.test_evaluation import tiny_pixel_model

    model = tiny_pixel_model()
    weights = model.state_dict()
    name = next(key for key in weights if key.startswith("world_model.predictor.") and key.endswith("weight"))
    weights[name] = torch.zeros(3, 3)
    torch.save({"state_dict": weights, "hyper_parameters": dict(model.hparams)}, tmp_path / "edited.ckpt")
    short = name.removeprefix("world_model.")
    with pytest.raises(CheckpointError, match=rf"{short} has shape \(3, 3\) in the checkpoint, \(\d+, \d+\) in the model"):
        load_world_model(tmp_path / "edited.ckpt")


def test_an_upload_without_network_or_token_is_one_line(tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, stderr = run_script("upload_checkpoint", ["checkpoint=pretrained:reacher-easy", "repo=me/model"], capsys,
                              monkeypatch, tmp_path)
    assert code == 2 and "cannot upload to Hugging Face repository 'me/model'" in stderr, stderr[-2000:]
    assert "Traceback" not in stderr and len([line for line in stderr.splitlines() if line.startswith("error:")]) == 1


# ------------------------------------------------------------------------------ names read from files
HOSTILE_SHARD_NAMES = ["../victim/shard-00000", "/tmp/shard-00000", "shard-00000/../../victim", "..", ""]


def hostile_export(source: Path, out: Path, shard: str) -> Path:
    """An exported HDF5 file whose embedded manifest names its first shard ``shard``."""
    import h5py
    from jepa_wm.data.interop import MANIFEST_ATTR, export_hdf5

    path = export_hdf5(source, out)
    with h5py.File(path, "r+") as file:
        manifest = json.loads(file.attrs[MANIFEST_ATTR])
        manifest["shards"][shard] = manifest["shards"].pop("shard-00000")
        file.attrs[MANIFEST_ATTR] = json.dumps(manifest)
    return path


@pytest.mark.parametrize("shard", HOSTILE_SHARD_NAMES)
def test_shard_names_from_an_hdf5_file_never_write_outside_the_dataset(shard, tmp_path, reacher_env_cfg,
                                                                       reacher_pixel_dataset, capsys, monkeypatch):
    victim = small_collection(reacher_env_cfg, tmp_path / "victim")
    before = snapshot(victim)
    h5 = hostile_export(reacher_pixel_dataset, tmp_path / "hostile.h5", shard)
    out = tmp_path / "sub" / "imported"
    code, stderr = run_script("convert_dataset", [f"path={h5}", "from=hdf5", f"out={out}"], capsys, monkeypatch, tmp_path)
    assert code == 2 and "shard" in stderr and "Traceback" not in stderr, stderr[-2000:]
    assert snapshot(victim) == before
    assert not out.exists() and sorted(path.name for path in tmp_path.iterdir()) == ["hostile.h5", "victim"]


@pytest.mark.parametrize("shard", ["../outside.npz", "/tmp/outside.npz", "shard-00000.npz/../../outside.npz"])
def test_shard_names_of_a_format1_manifest_never_delete_or_write_outside_the_dataset(shard, tmp_path,
                                                                                     reacher_pixel_dataset):
    from jepa_wm.data.convert import convert_dataset
    from tests.test_storage import write_format1

    old = write_format1(reacher_pixel_dataset, tmp_path / "old")
    (tmp_path / "outside.npz").write_bytes(b"the user's file")
    manifest = json.loads((old / MANIFEST_NAME).read_text())
    manifest["shards"][shard] = manifest["shards"].pop("shard-00000.npz")
    (old / MANIFEST_NAME).write_text(json.dumps(manifest))
    before = snapshot(old)
    with pytest.raises(DatasetError, match="shard names are shard-NNNNN.npz inside the dataset directory"):
        convert_dataset(old)
    assert snapshot(old) == before and (tmp_path / "outside.npz").read_bytes() == b"the user's file"


@pytest.mark.parametrize("shard", HOSTILE_SHARD_NAMES)
def test_shard_names_of_a_dataset_manifest_are_refused_before_any_file_is_read(shard, tmp_path, reacher_pixel_dataset):
    dataset = shutil.copytree(reacher_pixel_dataset, tmp_path / "hostile")
    reseal(dataset, lambda manifest: manifest["shards"].update({shard: manifest["shards"].pop("shard-00000")}))
    with pytest.raises(DatasetError, match="shard names are shard-NNNNN inside the dataset directory"):
        load_episodes(dataset, "pixels")


def test_an_export_replaces_only_an_earlier_export_and_clears_a_killed_ones_temporaries(
        tmp_path, reacher_pixel_dataset, capsys, monkeypatch):
    import h5py

    theirs = tmp_path / "results.h5"
    with h5py.File(theirs, "w") as file:
        file["table"] = np.arange(3)
    before = theirs.read_bytes()
    code, stderr = run_script("convert_dataset", [f"path={reacher_pixel_dataset}", "to=hdf5", f"out={theirs}"],
                              capsys, monkeypatch, tmp_path)
    assert code == 2 and "was not written by jepa-wm convert" in stderr and "Traceback" not in stderr, stderr[-2000:]
    assert theirs.read_bytes() == before

    ours = tmp_path / "export.h5"
    (tmp_path / ".export.h5.k1ll3d.partial").write_bytes(b"left by a killed export")
    (tmp_path / ".thesis.h5.x.partial").write_bytes(b"the user's")
    for _ in range(2):  # the second replaces the first: an export is ours to replace
        code, stderr = run_script("convert_dataset", [f"path={reacher_pixel_dataset}", "to=hdf5", f"out={ours}"],
                                  capsys, monkeypatch, tmp_path)
        assert code == 0, stderr[-2000:]
    assert not (tmp_path / ".export.h5.k1ll3d.partial").exists() and (tmp_path / ".thesis.h5.x.partial").exists()


@pytest.mark.parametrize("damage", ["not an object", "no episodes", "shard overlap", "episodes of another type"])
def test_a_refused_import_leaves_nothing_and_its_rerun_is_not_told_out_is_not_empty(
        damage, tmp_path, reacher_pixel_dataset, capsys, monkeypatch):
    import h5py
    from jepa_wm.data.interop import MANIFEST_ATTR, export_hdf5

    h5 = export_hdf5(reacher_pixel_dataset, tmp_path / "damaged.h5")
    with h5py.File(h5, "r+") as file:
        manifest = json.loads(file.attrs[MANIFEST_ATTR])
        if damage == "not an object":
            manifest = [manifest]
        elif damage == "no episodes":
            del manifest["episodes"]
        elif damage == "shard overlap":
            manifest["shards"]["shard-00001"]["episodes"] = [0, 4]
        else:
            manifest["shards"]["shard-00001"]["episodes"] = "2-4"
        file.attrs[MANIFEST_ATTR] = json.dumps(manifest)
    out = tmp_path / "imported"
    for _ in range(2):
        code, stderr = run_script("convert_dataset", [f"path={h5}", "from=hdf5", f"out={out}"], capsys, monkeypatch,
                                  tmp_path)
        assert code == 2 and "Traceback" not in stderr and "not empty" not in stderr, stderr[-2000:]
        assert not out.exists()


def test_an_import_that_fails_half_way_removes_what_it_wrote(tmp_path, reacher_pixel_dataset, monkeypatch):
    import jepa_wm.data.interop as interop

    h5 = interop.export_hdf5(reacher_pixel_dataset, tmp_path / "ok.h5")
    out = tmp_path / "imported"
    out.mkdir()
    real = interop._read_shard
    calls = []

    def fails_on_the_second_shard(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(interop, "_read_shard", fails_on_the_second_shard)
    with pytest.raises(OSError):
        interop.import_hdf5(h5, out)
    assert list(out.iterdir()) == []  # the directory was the user's: it stays, empty as it was
    monkeypatch.setattr(interop, "_read_shard", real)
    interop.import_hdf5(h5, out)  # the rerun
    assert load_episodes(out, "pixels").num_episodes == 6


# ------------------------------------------------------------------ only jepa-wm's own files are replaced
def test_a_fresh_training_run_never_replaces_a_users_config_yaml_or_metrics(tmp_path, reacher_pixel_dataset, capsys,
                                                                            monkeypatch):
    for name, text in (("config.yaml", "project: my thesis\nauthor: me\n"), ("csv/metrics.csv", "a,b\n1,2\n"),
                       ("wandb_run_id.txt", "my notes about runs\nsecond line\n")):
        project = tmp_path / name.replace("/", "-")
        (project / name).parent.mkdir(parents=True)
        (project / name).write_text(text)
        before = snapshot(project)
        code, stderr = run_script("train", tiny_run(reacher_pixel_dataset, project, steps=2), capsys, monkeypatch, tmp_path)
        assert code == 2 and f"holds {name} that jepa-wm did not write" in stderr and "Traceback" not in stderr, stderr[-2000:]
        assert snapshot(project) == before


def test_a_fresh_start_after_one_that_saved_nothing_is_a_new_wandb_run(tmp_path, reacher_pixel_dataset):
    run = tmp_path / "run"
    run.mkdir()
    (run / "wandb_run_id.txt").write_text("oldrun123")  # left by a start that saved no checkpoint
    train(reacher_pixel_dataset, run, "wandb.mode=offline", steps=2, every=2)
    assert (run / "wandb_run_id.txt").read_text().strip() != "oldrun123"
    assert (run / "config.yaml").read_text().startswith("# jepa-wm run config")


@pytest.mark.parametrize("command", ["train-cost", "train-policy"])
def test_a_head_is_written_only_over_a_checkpoint_of_the_same_model(command, tmp_path, reacher_pixel_dataset):
    from tests.test_evaluation import save_model_checkpoint, tiny_pixel_model

    run = train(reacher_pixel_dataset, tmp_path / "run", steps=2, every=2)
    checkpoint = run / "checkpoints" / "last.ckpt"
    notes, other = tmp_path / "notes.txt", save_model_checkpoint(tiny_pixel_model(), tmp_path / "other.ckpt")
    notes.write_text("mine")
    heads = ["learned_cost.steps=2", "learned_cost.batch_size=8"] if command == "train-cost" else [
        "policy=gcbc", "policy.steps=2", "policy.labels=16", "policy.batch_size=8"]
    for target in (notes, other):
        before = target.read_bytes()
        result = subprocess.run([sys.executable, "-m", "jepa_wm", command, f"checkpoint={checkpoint}", f"out={target}",
                                 "progress=false", *heads], capture_output=True, text=True, cwd=ROOT, timeout=600)
        assert result.returncode == 2 and "is not a checkpoint of this world model" in result.stderr, result.stderr[-2000:]
        assert target.read_bytes() == before


def test_quickstart_fresh_deletes_only_its_stages_own_files(tmp_path, capsys, monkeypatch):
    import jepa_wm.pipeline

    out = tmp_path / "project"
    (out / "train" / "checkpoints").mkdir(parents=True)
    (out / "train" / "checkpoints" / "last.ckpt").write_bytes(b"an earlier run")
    (out / "notes.txt").write_text("mine")
    (out / "train" / "results.xlsx").write_text("mine too")
    before = snapshot(out)
    code, stderr = run_script("quickstart", [f"out={out}", "fresh=true"], capsys, monkeypatch, tmp_path)
    assert code == 2 and "results.xlsx" in stderr and "fresh=true deletes only" in stderr, stderr[-2000:]
    assert snapshot(out) == before

    (out / "train" / "results.xlsx").unlink()

    def stop(*args, **kwargs):
        raise SystemExit(7)

    monkeypatch.setattr(jepa_wm.pipeline, "collect_stage", stop)
    code, _ = run_script("quickstart", [f"out={out}", "fresh=true"], capsys, monkeypatch, tmp_path)
    assert code == 7 and sorted(path.name for path in out.iterdir()) == ["notes.txt"]


def test_a_finished_run_with_other_model_settings_is_not_reused(tmp_path, reacher_pixel_dataset):
    from jepa_wm.pipeline import train_stage
    from tests.test_training import TINY_MODEL

    size = ["trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.limit_val_batches=1", "data.batch_size=4",
            "data.num_workers=0", "wandb.mode=disabled", "learned_cost=none", "best.metric=val/rollout_error_ratio",
            "best.mode=min", "trainer.enable_progress_bar=false", *TINY_MODEL]
    run = tmp_path / "train"
    train_stage(reacher_pixel_dataset, run, size)
    before = snapshot(run)
    train_stage(reacher_pixel_dataset, run, size)  # the same settings: reused
    with pytest.raises(ConfigError, match=r"holds a model trained with other settings \(model.predictor.hidden_dim: 16 -> 24"):
        train_stage(reacher_pixel_dataset, run, [*size, "model.predictor.hidden_dim=24"])
    assert snapshot(run) == before


# ------------------------------------------------------------------------------ heads: lost and false
def test_a_head_trained_while_another_trains_into_the_same_checkpoint_is_refused_not_lost(
        tmp_path, reacher_pixel_dataset, monkeypatch):
    from jepa_wm import load_world_model
    from jepa_wm.learned_cost import CostTrainer, default_settings
    from jepa_wm.pipeline import train_cost_for_checkpoint, train_policy_for_checkpoint
    from jepa_wm.policy import default_policy_settings

    run = train(reacher_pixel_dataset, tmp_path / "run", steps=2, every=2)
    checkpoint = run / "checkpoints" / "last.ckpt"
    policy = default_policy_settings("gcbc", steps=2, labels=16, batch_size=8)
    real = CostTrainer.train
    second = []

    def train_meanwhile(self, until, advance):
        try:  # the second writer reads the checkpoint only under the lock: it is refused, not silently stale
            train_policy_for_checkpoint(checkpoint, policy, progress=False)
        except ConfigError as error:
            second.append(str(error))
        return real(self, until, advance)

    monkeypatch.setattr(CostTrainer, "train", train_meanwhile)
    train_cost_for_checkpoint(checkpoint, default_settings("temporal", steps=2, batch_size=8), progress=False)
    assert second and "is in use" in second[0]
    monkeypatch.setattr(CostTrainer, "train", real)
    train_policy_for_checkpoint(checkpoint, policy, progress=False)  # the rerun keeps the cost
    model = load_world_model(checkpoint)
    assert model.learned_cost is not None and model.policy is not None


def test_a_head_is_not_trained_on_another_tasks_data(tmp_path, reacher_pixel_dataset, capsys, monkeypatch):
    from jepa_wm.config import load_group, to_dict

    run = train(reacher_pixel_dataset, tmp_path / "run", steps=2, every=2)
    other = small_collection(to_dict(load_group("env", "point_mass-easy")), tmp_path / "point_mass")
    before = snapshot(run)
    for script in ("train_cost", "train_policy"):
        code, stderr = run_script(script, [f"checkpoint={run / 'checkpoints' / 'last.ckpt'}", f"data.path={other}",
                                           "progress=false"], capsys, monkeypatch, tmp_path)
        assert code == 2 and "is not data of the world model's task (domain 'point_mass'" in stderr, stderr[-2000:]
        assert snapshot(run) == before


def test_a_stored_head_that_would_plan_with_garbage_is_refused_on_load(tmp_path, reacher_pixel_dataset, capsys,
                                                                        monkeypatch):
    from jepa_wm import load_world_model
    from jepa_wm.checkpoint import CheckpointError
    from jepa_wm.learned_cost import default_settings
    from jepa_wm.pipeline import train_cost_for_checkpoint, train_policy_for_checkpoint
    from jepa_wm.policy import default_policy_settings

    run = train(reacher_pixel_dataset, tmp_path / "run", steps=2, every=2)
    checkpoint = run / "checkpoints" / "last.ckpt"
    train_cost_for_checkpoint(checkpoint, default_settings("temporal", steps=2, batch_size=8), progress=False)
    train_policy_for_checkpoint(checkpoint, default_policy_settings("gcbc", steps=2, labels=16, batch_size=8),
                                progress=False)
    good = torch.load(checkpoint, weights_only=True)

    def first_weight(entry):
        return next(iter(entry["state_dict"].values()))

    edits = {
        "learned cost holds NaN or inf": lambda c: first_weight(c["learned_cost"]).fill_(float("nan")),
        "policy holds NaN or inf": lambda c: c["policy"]["input_mean"].fill_(float("inf")),
        "learned cost has all-zero weights": lambda c: [w.zero_() for w in c["learned_cost"]["state_dict"].values()],
        "policy has a non-positive scale": lambda c: c["policy"]["input_std"].fill_(0.0),
        "learned cost has a non-positive scale": lambda c: c["learned_cost"].update(learned_scale=-1.0),
        "policy outputs 3 action dimensions": lambda c: c["policy"]["shape"].update(action_dim=3),
    }
    for problem, edit in edits.items():
        broken = copy.deepcopy(good)
        edit(broken)
        path = tmp_path / "broken.ckpt"
        torch.save(broken, path)
        with pytest.raises(CheckpointError, match=problem):
            load_world_model(path)
    code, stderr = run_script("plan", [f"checkpoint={path}", "episodes=1", "progress=false"], capsys, monkeypatch,
                              tmp_path)
    assert code == 2 and "policy outputs 3 action dimensions" in stderr and "Traceback" not in stderr, stderr[-2000:]
    assert load_world_model(checkpoint).policy is not None  # the untouched checkpoint loads


@pytest.mark.parametrize("garbage", [b"not a torch file", "pickle", "list"])
def test_a_damaged_head_training_state_restarts_the_head_instead_of_failing(garbage, tmp_path, reacher_pixel_dataset):
    from jepa_wm import load_world_model
    from jepa_wm.learned_cost import default_settings
    from jepa_wm.pipeline import train_cost_for_checkpoint

    run = train(reacher_pixel_dataset, tmp_path / "run", steps=2, every=2)
    checkpoint = run / "checkpoints" / "last.ckpt"
    state = checkpoint.with_name(".last.ckpt.learned_cost-state")
    if garbage == "pickle":
        torch.save({"world_model_step": 2, "head": object()}, state)
    elif garbage == "list":
        torch.save([1, 2, 3], state)
    else:
        state.write_bytes(garbage)
    train_cost_for_checkpoint(checkpoint, default_settings("temporal", steps=2, batch_size=8), progress=False)
    assert load_world_model(checkpoint).learned_cost is not None and not state.exists()


def wait_for_text(path: Path, text: str, process, seconds: float = 300) -> None:
    deadline = time.time() + seconds
    while text not in (path.read_text(errors="replace") if path.is_file() else "") and process.poll() is None:
        assert time.time() < deadline, path.read_text(errors="replace")[-2000:]
        time.sleep(0.1)


@pytest.mark.parametrize("command,stop", [("train-cost", signal.SIGINT), ("train-policy", signal.SIGTERM),
                                          ("train-cost", signal.SIGHUP)], ids=["cost-Ctrl-C", "policy-SIGTERM",
                                                                                "cost-SIGHUP"])
def test_a_head_stopped_by_a_signal_saves_its_last_step_says_so_and_its_rerun_is_accepted(
        command, stop, tmp_path, reacher_pixel_dataset):
    run = train(reacher_pixel_dataset, tmp_path / "run", steps=2, every=2)
    out = tmp_path / "heads" / "with-head.ckpt"
    head = "learned_cost" if command == "train-cost" else "policy"
    size = ["learned_cost.batch_size=8"] if command == "train-cost" else ["policy=gcbc", "policy.labels=16",
                                                                         "policy.batch_size=8"]
    argv = [sys.executable, "-m", "jepa_wm", command, f"checkpoint={run / 'checkpoints' / 'last.ckpt'}", f"out={out}",
            *size]
    stderr_file = tmp_path / "stderr.txt"
    with open(stderr_file, "w") as stderr:
        process = subprocess.Popen([*argv, f"{head}.steps=1000000"], stdout=subprocess.DEVNULL, stderr=stderr,
                                   cwd=ROOT, env={**os.environ, "WANDB_MODE": "disabled"})
        wait_for_text(stderr_file, "step/s", process)
        process.send_signal(stop)
        code = process.wait(timeout=120)
    text = stderr_file.read_text(errors="replace")
    word = "interrupted:" if stop == signal.SIGINT else "terminated:"
    lines = [line for line in text.splitlines() if line.startswith(word)]
    assert code == (130 if stop == signal.SIGINT else 143) and len(lines) == 1 and "Traceback" not in text, text[-2000:]
    state = torch.load(out.with_name(f".{out.name}.{head}-state"), weights_only=True)
    assert state["step"] > 0 and f"step {state['step']} is saved: rerun the same command to continue" in lines[0]
    rerun = subprocess.run([*argv, f"{head}.steps=2", "progress=false"], capture_output=True, text=True, cwd=ROOT,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP])
def test_collect_stopped_by_sigterm_or_sighup_says_so_in_one_line_and_its_rerun_finishes(stop, tmp_path):
    out = tmp_path / "data"
    argv = [sys.executable, "-m", "jepa_wm", "collect", "env=reacher-easy", f"out={out}", "episodes=40",
            "steps_per_episode=10", "workers=1", "episodes_per_shard=1"]
    stderr_file = tmp_path / "stderr.txt"
    with open(stderr_file, "w") as stderr:
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr, cwd=ROOT)
        deadline = time.time() + 300
        while not list(out.glob("shard-*")) and process.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        process.send_signal(stop)
        code = process.wait(timeout=120)
    text = stderr_file.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.startswith("terminated:")]
    assert code == 143 and len(lines) == 1 and "rerun the same command" in lines[0] and "Traceback" not in text, text
    rerun = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert load_episodes(out, "pixels").num_episodes == 40


def test_resuming_a_run_keeps_the_heads_stored_in_its_checkpoints(tmp_path, reacher_pixel_dataset):
    from jepa_wm import load_world_model
    from jepa_wm.pipeline import train_policy_for_checkpoint
    from jepa_wm.policy import default_policy_settings

    run = train(reacher_pixel_dataset, tmp_path / "run", steps=2, every=2)
    last = run / "checkpoints" / "last.ckpt"
    train_policy_for_checkpoint(last, default_policy_settings("gcbc", steps=2, labels=16, batch_size=8), progress=False)
    policy = torch.load(last, weights_only=True)["policy"]
    train(reacher_pixel_dataset, run, "resume=true", steps=4, every=2)
    assert checkpoint_step(last) == 4
    kept = run / "checkpoints" / "last-step2-with-heads.ckpt"
    model = load_world_model(kept)
    assert model.policy is not None and checkpoint_step(kept) == 2
    assert all(torch.equal(a, b) for a, b in zip(model.policy.net.state_dict().values(), policy["state_dict"].values()))


# ------------------------------------------------------------------------ mistakes: one line, exit 2, nothing written
TRAINING_MISTAKES = {
    "an interpolation that does not resolve": (["out=${nowhere}/run"], "cannot resolve in out: Interpolation key"),
    "a seed no generator takes as it is": (["seed=4294967296"], "seed must be an integer in [0, 2**32)"),
    "a trainer argument the run sets itself": (["+trainer.callbacks=[]"], "trainer.callbacks is set by jepa-wm itself"),
    "a trainer logger": (["+trainer.logger=false"], "trainer.logger is set by jepa-wm itself"),
    "no checkpointing": (["+trainer.enable_checkpointing=false"], "trainer.enable_checkpointing is set by jepa-wm"),
    "no training episodes left": (["data.val_fraction=0.99"], "data.val_fraction=0.99 leaves no training episodes"),
}


@pytest.mark.parametrize("mistake", list(TRAINING_MISTAKES))
def test_a_training_mistake_is_one_line_exit_2_and_writes_nothing(mistake, tmp_path, reacher_pixel_dataset, capsys,
                                                                  monkeypatch):
    overrides, expected = TRAINING_MISTAKES[mistake]
    code, stderr = run_script("train", tiny_run(reacher_pixel_dataset, tmp_path / "run", *overrides), capsys,
                              monkeypatch, tmp_path)
    assert code == 2 and expected in stderr and "Traceback" not in stderr, stderr[-2000:]
    assert [line for line in stderr.splitlines() if line.startswith("error:")] == [stderr.strip().splitlines()[-1]]
    assert sorted(path.name for path in tmp_path.iterdir()) == []


def test_an_escaped_dollar_in_a_value_stays_literal():
    assert compose("collect", [r"out=runs/\${x}"]).out == "runs/${x}"
    assert compose("collect", ["out=runs/${seed}", "seed=3"]).out == "runs/3"


def test_online_logging_without_an_api_key_is_refused_before_anything_is_written(tmp_path, reacher_pixel_dataset):
    env = {key: value for key, value in os.environ.items() if not key.startswith("WANDB_")}
    env.update(HOME=str(tmp_path / "home"), NETRC=str(tmp_path / "home" / ".netrc"))
    result = subprocess.run([sys.executable, "-m", "jepa_wm", "train",
                             *tiny_run(reacher_pixel_dataset, tmp_path / "run", "wandb.mode=online")],
                            capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert result.returncode == 2 and "wandb.mode=online needs a W&B API key" in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("card", ["{not json", "[]", '{"task": "reacher-easy"}', "CI"])
def test_a_damaged_shipped_model_card_is_named_in_one_line(card, tmp_path, monkeypatch, capsys):
    import jepa_wm.references

    for source in jepa_wm.references.PRETRAINED_DIR.glob("reacher-easy.*"):
        shutil.copy(source, tmp_path / source.name)
    if card == "CI":  # a card whose interval is not [low, high]
        loaded = json.loads((tmp_path / "reacher-easy.json").read_text())
        loaded["test_success"]["ci95"] = "wide"
        card = json.dumps(loaded)
    (tmp_path / "reacher-easy.json").write_text(card)
    monkeypatch.setattr(jepa_wm.references, "PRETRAINED_DIR", tmp_path)
    for argv in (["checkpoint=pretrained:"], ["checkpoint=pretrained:reacher-easy", "episodes=1"]):
        code, stderr = run_script("plan", argv, capsys, monkeypatch, tmp_path)
        assert code == 2 and "reacher-easy.json" in stderr and "Traceback" not in stderr, stderr[-2000:]


@pytest.mark.parametrize("repo", ["", "null", "../outside", "a/b/c"])
def test_upload_names_a_bad_repository_before_reading_or_sending_anything(repo, tmp_path, capsys, monkeypatch):
    code, stderr = run_script("upload_checkpoint", [f"checkpoint={tmp_path / 'missing.ckpt'}", f"repo={repo}"], capsys,
                              monkeypatch, tmp_path)
    assert code == 2 and "is not a Hugging Face repository name" in stderr and "Traceback" not in stderr, stderr[-2000:]


@pytest.mark.parametrize("script", ["collect", "train", "plan"])
def test_an_overlong_output_path_is_one_line_exit_2(script, tmp_path, reacher_pixel_dataset, capsys, monkeypatch):
    out = tmp_path / ("x" * 300)
    argv = {"collect": ["env=reacher-easy", "episodes=1", "steps_per_episode=5", "workers=1", f"out={out}"],
            "train": tiny_run(reacher_pixel_dataset, out),
            "plan": ["checkpoint=pretrained:reacher-easy", "episodes=1", f"out={out / 'plan'}"]}[script]
    code, stderr = run_script(script, [*argv, "progress=false"] if script != "train" else argv, capsys, monkeypatch,
                              tmp_path)
    assert code == 2 and "File name too long; choose a shorter out=" in stderr and "Traceback" not in stderr, stderr[-2000:]


@pytest.mark.parametrize("script", ["train_cost", "train_policy"])
def test_a_head_for_a_shipped_model_is_written_only_into_a_copy(script, tmp_path, capsys, monkeypatch):
    import jepa_wm.references

    before = snapshot(jepa_wm.references.PRETRAINED_DIR)
    code, stderr = run_script(script, ["checkpoint=pretrained:reacher-easy"], capsys, monkeypatch, tmp_path)
    assert code == 2 and "pass out=FILE, e.g. out=runs/policies/reacher-easy.ckpt" in stderr, stderr[-2000:]
    code, stderr = run_script(script, ["checkpoint=pretrained:reacher-easy", f"out={tmp_path / 'copy.ckpt'}"], capsys,
                              monkeypatch, tmp_path)  # the shipped model's data is not here: it says which to pass
    assert code == 2 and "pass data.path=DATASET" in stderr and "Traceback" not in stderr, stderr[-2000:]
    assert snapshot(jepa_wm.references.PRETRAINED_DIR) == before


def test_a_full_disk_stops_an_export_before_it_starts_and_a_plans_video_with_one_line(
        tmp_path, reacher_pixel_dataset, capsys, monkeypatch):
    import jepa_wm.data.interop
    import jepa_wm.planning.evaluate

    monkeypatch.setattr(jepa_wm.data.interop, "free_bytes", lambda directory: 1000)
    code, stderr = run_script("convert_dataset", [f"path={reacher_pixel_dataset}", f"out={tmp_path / 'x.h5'}", "to=hdf5"],
                              capsys, monkeypatch, tmp_path)
    assert code == 2 and "No space left on device: the export needs" in stderr and "Traceback" not in stderr, stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == []

    real_write = jepa_wm.planning.evaluate.write_bytes_atomic

    def full_disk_for_videos(path, data):
        if Path(path).suffix == ".gif":
            raise OSError(28, "No space left on device", str(path))
        return real_write(path, data)

    monkeypatch.setattr(jepa_wm.planning.evaluate, "write_bytes_atomic", full_disk_for_videos)
    code, stderr = run_script("plan", ["checkpoint=pretrained:reacher-easy", "episodes=1", "videos=1", "progress=false",
                                       "env.episode_length=3", f"out={tmp_path / 'plan'}"], capsys, monkeypatch, tmp_path)
    lines = [line for line in stderr.strip().splitlines() if line]
    assert code == 2 and len(lines) == 1 and "episodes.gif: No space left on device" in lines[0], stderr
    assert not (tmp_path / "plan" / "episodes.gif").exists()


def test_a_head_on_data_that_cannot_train_it_is_one_line_and_writes_nothing(tmp_path, reacher_pixel_dataset,
                                                                            reacher_env_cfg, capsys, monkeypatch):
    run = train(reacher_pixel_dataset, tmp_path / "run", steps=2, every=2)
    checkpoint = run / "checkpoints" / "last.ckpt"
    one = small_collection(reacher_env_cfg, tmp_path / "one", episodes=1, steps_per_episode=20)
    short = small_collection(reacher_env_cfg, tmp_path / "short", episodes=4, steps_per_episode=4)
    before = snapshot(run)
    for script, data, expected in (("train_cost", one, "has 1 episode(s) for the world model's train/held-out split"),
                                   ("train_policy", one, "has 1 episode(s)"),
                                   ("train_policy", short, "cannot train this head: episodes of 4 steps are too short")):
        code, stderr = run_script(script, [f"checkpoint={checkpoint}", f"data.path={data}", f"out={tmp_path / 'h.ckpt'}",
                                           "progress=false", *(["policy=gcbc"] if script == "train_policy" else [])],
                                  capsys, monkeypatch, tmp_path)
        assert code == 2 and expected in stderr and "Traceback" not in stderr, stderr[-2000:]
        assert not (tmp_path / "h.ckpt").exists() and snapshot(run) == before
