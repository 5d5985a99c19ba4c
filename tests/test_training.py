"""Training runs: last/best checkpoints, resume after kills, what a resumed run records, clean failures."""

import csv
import os
import random
import runpy
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from jepa_wm import load_world_model
from jepa_wm.config import compose
from jepa_wm.errors import ConfigError
from jepa_wm.pipeline import train_from_config

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = ["model.encoder.channels=[8,8,8,8]", "model.encoder.embed_dim=8", "model.predictor.hidden_dim=16"]


def tiny_run(dataset, out, *overrides, steps=12, every=4):
    """Overrides of a tiny, fast training run: validation (and last.ckpt) every ``every`` steps."""
    return [f"data.path={dataset}", f"out={out}", f"trainer.max_steps={steps}", f"trainer.val_check_interval={every}",
            "trainer.limit_val_batches=1", f"trainer.log_every_n_steps={every}", "trainer.enable_progress_bar=false",
            "data.batch_size=4", "data.num_workers=0", "wandb.mode=disabled", *TINY_MODEL,
            "learned_cost=none",  # trained after the world model; its own tests turn it on
            # one validation window is too few frames to rank distances between (the default best.metric)
            "best.metric=val/rollout_error_ratio", "best.mode=min", *overrides]


def train(dataset, out, *overrides, **sizes):
    return train_from_config(compose("train", tiny_run(dataset, out, *overrides, **sizes)))


def checkpoint_step(path):
    return torch.load(path, weights_only=True)["global_step"]


def metric_rows(run):
    with open(run / "csv" / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


def logged_steps(rows, metric):
    return [int(row["step"]) for row in rows if row.get(metric)]


def test_last_is_the_newest_step_and_best_the_best_validation(tmp_path, reacher_pixel_dataset):
    run = train(reacher_pixel_dataset, tmp_path / "run", steps=14, every=4)  # validations at 4, 8, 12; end at 14
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert checkpoint_step(run / "checkpoints" / "last.ckpt") == 14
    scores = {int(row["step"]) + 1: float(row["val/rollout_error_ratio"]) for row in metric_rows(run)
              if row.get("val/rollout_error_ratio")}
    assert sorted(scores) == [4, 8, 12]
    assert checkpoint_step(run / "checkpoints" / "best.ckpt") == min(scores, key=scores.get)


def test_a_selection_metric_never_logged_warns_and_keeps_last(tmp_path, reacher_pixel_dataset):
    """One validation window cannot rank distances: no best.ckpt, a warning naming what was logged."""
    with pytest.warns(UserWarning, match="best.metric=val/distance_rank_correlation was never logged.*val/loss"):
        run = train(reacher_pixel_dataset, tmp_path / "run", "best.metric=val/distance_rank_correlation",
                    "best.mode=max", steps=8, every=4)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]


def test_resume_in_a_copied_directory_continues_in_place_with_the_whole_history(tmp_path, reacher_pixel_dataset):
    first = train(reacher_pixel_dataset, tmp_path / "run", steps=8, every=4)
    best_before = torch.load(first / "checkpoints" / "best.ckpt", weights_only=True)
    copy = shutil.copytree(first, tmp_path / "copy")
    train(reacher_pixel_dataset, copy, "resume=true", steps=16, every=4)
    assert sorted(p.name for p in (copy / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert checkpoint_step(copy / "checkpoints" / "last.ckpt") == 16
    rows = metric_rows(copy)
    assert logged_steps(rows, "val/loss") == [3, 7, 11, 15]  # the first run's rows kept, none repeated
    best_score = torch.load(copy / "checkpoints" / "best.ckpt", weights_only=True)["callbacks"]
    best_score = next(state["best_model_score"] for key, state in best_score.items() if "BestCheckpoint" in key
                      or "ModelCheckpoint" in key)
    all_scores = [float(row["val/rollout_error_ratio"]) for row in rows if row.get("val/rollout_error_ratio")]
    assert float(best_score) == pytest.approx(min(all_scores))  # the copy remembered the first run's best
    assert checkpoint_step(first / "checkpoints" / "last.ckpt") == 8  # the original is untouched
    assert best_before["global_step"] in (4, 8)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_run_resumed_mid_epoch_ends_with_exactly_the_weights_of_the_run_never_stopped(tmp_path, reacher_pixel_dataset,
                                                                                         workers):
    """Stopped at steps 6 (in the first pass over the windows) and 22 (in the second), resumed each time:
    the same batches in the same order, the same augmentation draws, so the very same weights."""
    windows = ["model.frameskip=1", "model.augment.shift=2", "model.augment.colour=0.2",  # 18 batches per pass
               f"data.num_workers={workers}"]
    whole = train(reacher_pixel_dataset, tmp_path / "whole", *windows, "checkpoints_at=[6,22]", steps=26, every=8)
    for stop in (6, 22):
        stopped = shutil.copytree(whole, tmp_path / f"stopped-{stop}")
        shutil.copyfile(whole / "checkpoints" / f"step-{stop}.ckpt", stopped / "checkpoints" / "last.ckpt")
        train(reacher_pixel_dataset, stopped, *windows, "checkpoints_at=[6,22]", "resume=true", steps=26, every=8)
        expected = torch.load(whole / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        resumed = torch.load(stopped / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        assert expected.keys() == resumed.keys()
        different = [name for name in expected if not torch.equal(expected[name], resumed[name])]
        assert not different, f"resumed at step {stop}: {different[:5]}"


def test_resume_applies_a_new_learning_rate_and_records_it(tmp_path, reacher_pixel_dataset):
    run = train(reacher_pixel_dataset, tmp_path / "run", "model.optim.warmup_steps=1", steps=4, every=4)
    train(reacher_pixel_dataset, run, "resume=true", "model.optim.lr=0.004", "model.optim.warmup_steps=1",
          "model.optim.min_lr_ratio=1.0", steps=8, every=4)
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert [group["lr"] for group in checkpoint["optimizer_states"][0]["param_groups"]] == [pytest.approx(0.004)]
    assert checkpoint["hyper_parameters"]["cfg"]["optim"]["lr"] == 0.004
    assert "lr: 0.004" in (run / "config.yaml").read_text()


def test_resume_refuses_an_architecture_change_naming_the_keys_and_changes_nothing(tmp_path, reacher_pixel_dataset):
    run = train(reacher_pixel_dataset, tmp_path / "run", steps=4, every=4)
    before = {path.name: path.read_bytes() for path in [run / "config.yaml", *(run / "checkpoints").iterdir()]}
    with pytest.raises(ConfigError, match=r"resume=true cannot change .*model.encoder.embed_dim: 8 -> 16"):
        train(reacher_pixel_dataset, run, "resume=true", "model.encoder.embed_dim=16", steps=8)
    with pytest.raises(ConfigError, match=r"model.regularizers.inverse_dynamics: 1.0 -> 0.0"):
        train(reacher_pixel_dataset, run, "resume=true", "model.regularizers.inverse_dynamics=0", steps=8)
    with pytest.raises(ConfigError, match=r"data.val_fraction: 0.1 -> 0.3"):
        train(reacher_pixel_dataset, run, "resume=true", "data.val_fraction=0.3", steps=8)
    after = {path.name: path.read_bytes() for path in [run / "config.yaml", *(run / "checkpoints").iterdir()]}
    assert after == before


def test_a_model_trains_on_several_datasets_records_them_and_resumes_only_on_the_same_data(
        tmp_path, reacher_pixel_dataset, reacher_second_seed_dataset):
    """More data without collecting again: data.path=[a,b] trains on both; the learned cost trained after the
    world model finds both from the checkpoint; a resume on other data (one of them) is refused."""
    from jepa_wm.pipeline import train_config

    both = f"[{reacher_pixel_dataset},{reacher_second_seed_dataset}]"
    overrides = tiny_run(both, tmp_path / "run", "learned_cost=hilbert", "learned_cost.steps=5",
                         "learned_cost.batch_size=16", steps=4, every=4)
    run = train_from_config(train_config(overrides))
    model = load_world_model(run / "checkpoints" / "last.ckpt")
    assert model.hparams["env"]["dataset"] == [str(reacher_pixel_dataset), str(reacher_second_seed_dataset)]
    assert model.learned_cost is not None and model.learned_cost.kind == "hilbert"
    before = (run / "checkpoints" / "last.ckpt").read_bytes()
    with pytest.raises(ConfigError, match="resume=true cannot change .*the dataset"):
        train(reacher_pixel_dataset, run, "resume=true", steps=8, every=4)
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == before
    resumed = train_from_config(train_config(tiny_run(both, run, "resume=true", steps=8, every=4)))
    assert checkpoint_step(resumed / "checkpoints" / "last.ckpt") == 8


def test_a_start_that_fails_leaves_nothing_behind(tmp_path, reacher_pixel_dataset):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="the model config is invalid: unknown predictor 'mlpp'"):
        train(reacher_pixel_dataset, out, "model.predictor.name=mlpp")
    assert not out.exists()
    with pytest.raises(ConfigError, match="not a pytorch_lightning.Trainer argument; did you mean 'max_epochs'"):
        train(reacher_pixel_dataset, out, "+trainer.max_epoch=3")
    assert not out.exists()


def test_a_timm_checkpoint_rebuilds_without_its_pretrained_weights_file(tmp_path, reacher_pixel_dataset):
    import timm

    weights = tmp_path / "vit.pth"
    torch.save(timm.create_model("vit_tiny_patch16_224", img_size=32, num_classes=0).state_dict(), weights)
    run = train(reacher_pixel_dataset, tmp_path / "run", "model.encoder.name=timm", "model.encoder.pretrained=true",
                "model.encoder.frozen=true", "model.encoder.image_size=32", f"model.encoder.pretrained_file={weights}",
                steps=2, every=2)
    trained = load_world_model(run / "checkpoints" / "last.ckpt")
    weights.unlink()  # the training machine's file is gone; the checkpoint holds the weights
    loaded = load_world_model(run / "checkpoints" / "last.ckpt")
    obs = torch.randint(0, 256, (1, 1, 64, 64, 3), dtype=torch.uint8)
    assert torch.equal(loaded.encode(obs), trained.encode(obs))


# -------------------------------------------------------------------------- kills, from the command line
def kill_at_a_random_point(process, last: Path, rng: random.Random, kill_signal) -> bool:
    """Let the run write 0-2 more checkpoints, then kill it a random moment later; False if it ended first."""
    def stamp():
        return last.stat().st_mtime_ns if last.is_file() else None

    checkpoints_to_wait = rng.randint(0, 2)
    seen = stamp()
    while process.poll() is None and not last.parent.parent.exists():  # past the interpreter's start
        time.sleep(0.02)
    while process.poll() is None and checkpoints_to_wait > 0:
        time.sleep(0.02)
        if stamp() != seen:
            seen, checkpoints_to_wait = stamp(), checkpoints_to_wait - 1
    time.sleep(rng.uniform(0.0, 0.6))
    if process.poll() is not None:
        return False
    process.send_signal(kill_signal)
    process.wait(timeout=120)
    return True


def test_training_killed_at_random_points_and_resumed_ends_with_one_checkpoint_and_the_whole_history(
        tmp_path, reacher_pixel_dataset):
    out = tmp_path / "run"
    last = out / "checkpoints" / "last.ckpt"
    base = [sys.executable, str(ROOT / "scripts" / "train.py"),
            *tiny_run(reacher_pixel_dataset, out, steps=60, every=5)]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    rng = random.Random(0)
    kills = {signal.SIGKILL: 0, signal.SIGINT: 0}
    for attempt in range(10):
        command = base + (["resume=true"] if last.is_file() else [])
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        kill_signal = signal.SIGKILL if attempt % 2 == 0 else signal.SIGINT
        if attempt < 6 and kill_at_a_random_point(process, last, rng, kill_signal):
            kills[kill_signal] += 1
        code = process.wait(timeout=600)
        stderr = process.stderr.read()
        finished = last.is_file() and checkpoint_step(last) == 60
        if code == 0 or finished:  # (a signal may land after the work, while the interpreter exits)
            break
        assert code in (-signal.SIGKILL, 130), stderr[-2000:]
        if code == 130:  # Ctrl-C: one line that says how to go on, no traceback
            assert "interrupted: " in stderr and "Traceback" not in stderr, stderr[-2000:]
    assert kills[signal.SIGKILL] >= 1 and kills[signal.SIGINT] >= 1, kills
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert checkpoint_step(last) == 60
    rows = metric_rows(out)
    assert logged_steps(rows, "val/loss") == list(range(4, 60, 5))  # every validation, exactly once
    assert logged_steps(rows, "train/loss") == list(range(4, 60, 5))


# --------------------------------------------------------------------------- mistakes on the command line
def run_script(script, argv, capsys, monkeypatch, cwd):
    """Run ``scripts/<script>.py argv`` in this process (fast); returns (exit code, stderr)."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [script, *argv])
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    code = 0
    try:
        runpy.run_path(str(ROOT / "scripts" / f"{script}.py"), run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


MISTAKES = {
    "train batch size not a number": ("train", ["data.batch_size=abc"], "data.batch_size must be an integer; got 'abc'"),
    "train batch size zero": ("train", ["data.batch_size=0"], "data.batch_size must be an integer >= 1; got 0"),
    "max_steps not a number": ("train", ["trainer.max_steps=abc"], "trainer.max_steps must be an integer; got 'abc'"),
    "best by planning without planning": ("train", ["best.metric=eval/success_rate", "eval.every_n_steps=0"],
                                          "set eval.every_n_steps"),
    "history zero": ("train", ["model.history=0"], "model.history must be an integer >= 1; got 0"),
    "decoder width zero": ("train", ["model.decoder.enabled=true", "model.decoder.channels=0"],
                           "model.decoder.channels must be an integer >= 1; got 0"),
    "val_fraction one": ("train", ["data.val_fraction=1.0"], "data.val_fraction must be a number in (0, 1); got 1.0"),
    "missing data.path": ("train!", [], "missing required setting data.path: pass data.path=VALUE"),
    "data.path a file": ("train", ["data.path=FILE"], "is a file"),
    "data.path missing": ("train", ["data.path=nowhere"], "does not exist"),
    "collect episodes zero": ("collect", ["episodes=0"], "episodes must be an integer >= 1; got 0"),
    "collect episodes negative": ("collect", ["episodes=-3"], "episodes must be an integer >= 1; got -3"),
    "collect episodes not a number": ("collect", ["episodes=abc"], "episodes must be an integer; got 'abc'"),
    "collect workers zero": ("collect", ["workers=0"], "workers must be an integer >= 1; got 0"),
    "plan episodes zero": ("plan", ["episodes=0"], "episodes must be an integer >= 1; got 0"),
    "plan split unknown": ("plan", ["split=val", "checkpoint=CKPT"], "unknown split 'val'"),
    "plan random checkpoint": ("plan", ["checkpoint=RANDOM"], "is corrupt or truncated, or not a PyTorch checkpoint"),
    "plan foreign config": ("plan", ["checkpoint=FOREIGN"], "its model config cannot build a jepa-wm world model"),
    # Values a library refuses: turned into one line naming the key where user input meets the library.
    "train out a file": ("train", ["out=FILE"], "out=FILE is a file"),
    "collect out a file": ("collect", ["out=FILE"], "out=FILE is a file"),
    "plan out a file": ("plan", ["checkpoint=CKPT", "out=FILE"], "out=FILE is a file"),
    "precision unknown": ("train", ["trainer.precision=bf17"], "trainer.precision=bf17: refused by pytorch_lightning"),
    "no devices": ("train", ["trainer.devices=0"], "trainer.devices=0"),
    "history longer than the episodes": ("train", ["model.history=1000"], "do not fit the data"),
    "learning rate NaN": ("train", ["model.optim.lr=nan"], "model.optim.lr must be a finite number"),
    "learning rate negative": ("train", ["model.optim.lr=-0.1"], "model.optim.lr must be a number > 0"),
    "snapshot steps not numbers": ("train", ["checkpoints_at=[abc]"], "checkpoints_at must be a list of integers"),
    "model group with a path": ("train", ["model=../plan"], "unknown model '../plan'"),
    "no encoder stages": ("train", ["model.encoder.channels=[]"], "model.encoder.channels must be a non-empty list"),
    "an encoder stage without channels": ("train", ["model.encoder.channels=[8,0]"], "model.encoder.channels must be"),
    "wandb mode misspelt": ("train", ["wandb.mode=onlin"], "wandb.mode must be one of offline, online, disabled"),
    "a transformer with heads that do not divide": ("train", ["model.predictor.name=transformer", "model.predictor.heads=3"],
                                                    "must be divisible by heads"),
    "collect seed negative": ("collect", ["seed=-1"], "seed must be an integer in [0, 2**32); got -1"),
    "collect unknown policy": ("collect", ["policy.name=gaussian"], "unknown policy.name 'gaussian'"),
    "collect camera out of range": ("collect", ["env.camera_id=99"], "camera_id 99 does not exist in reacher"),
    "collect unknown domain": ("collect", ["env.domain=nosuch"], "unknown dm_control task 'nosuch-easy'"),
    "collect unknown task": ("collect", ["env.task=esay"], "did you mean 'reacher-easy'"),
    "collect image too large": ("collect", ["env.image_size=20000"], "larger than reacher's offscreen buffer"),
    "collect unknown observation": ("collect", ["env.obs_type=depth"], "env.obs_type must be one of pixels, state, both"),
    "collect negative threshold": ("collect", ["env.success_threshold=-1"], "success_threshold must be a positive"),
    "collect env group with a path": ("collect", ["env=../plan"], "unknown env '../plan'"),
    "plan negative threshold": ("plan", ["checkpoint=CKPT", "env.success_threshold=-1"], "success_threshold must be"),
    "plan unknown device": ("plan", ["checkpoint=CKPT", "device=tpu"], "device=tpu is not a torch device"),
    **({} if torch.cuda.is_available() else {
        "gpu training without a GPU": ("train", ["trainer.accelerator=gpu"], "trainer.accelerator=gpu: refused"),
        "gpu planning without a GPU": ("plan", ["checkpoint=CKPT", "device=cuda"], "device=cuda is not available"),
    }),
}


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_every_mistake_exits_2_with_one_line_and_leaves_no_files(name, tmp_path, capsys, monkeypatch,
                                                                  reacher_pixel_dataset):
    script, argv, message = MISTAKES[name]
    (tmp_path / "FILE").write_text("not a dataset")
    (tmp_path / "RANDOM").write_bytes(random.Random(0).randbytes(4096))
    from tests.test_evaluation import save_model_checkpoint, tiny_pixel_model

    save_model_checkpoint(tiny_pixel_model(), tmp_path / "CKPT")
    foreign = tiny_pixel_model()
    foreign.hparams["cfg"]["encoder"].pop("name")
    save_model_checkpoint(foreign, tmp_path / "FOREIGN")
    work = tmp_path / "work"
    work.mkdir()
    argv = [arg.replace("=FILE", f"={tmp_path / 'FILE'}").replace("CKPT", str(tmp_path / "CKPT"))
            .replace("RANDOM", str(tmp_path / "RANDOM")).replace("FOREIGN", str(tmp_path / "FOREIGN")) for arg in argv]
    if script == "train":
        argv = [f"data.path={reacher_pixel_dataset}", f"out={work / 'run'}", *argv]
    elif script == "collect":
        argv = [f"out={work / 'data'}", "episodes=1", *argv]
    else:
        argv = [f"out={work / 'plan'}", *argv]
    message = message.replace("=FILE", f"={tmp_path / 'FILE'}")
    code, stderr = run_script(script.rstrip("!"), argv, capsys, monkeypatch, work)
    assert code == 2, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], stderr
    assert "Traceback" not in stderr and "weights_only=False" not in stderr
    assert list(work.iterdir()) == []


def test_a_corrupt_last_checkpoint_on_resume_is_named(tmp_path, reacher_pixel_dataset, capsys, monkeypatch):
    run = train(reacher_pixel_dataset, tmp_path / "run", steps=2, every=2)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"\x00" * 100)
    code, stderr = run_script("train", tiny_run(reacher_pixel_dataset, run, "resume=true", steps=4), capsys,
                              monkeypatch, tmp_path)
    assert code == 2 and "last.ckpt is corrupt or truncated" in stderr and "Traceback" not in stderr


def test_nan_in_the_data_stops_training_with_a_clear_error(tmp_path, reacher_pixel_dataset, capsys, monkeypatch):
    from jepa_wm.data.dataset import EpisodeStore

    original = EpisodeStore.read_windows

    def poisoned(self, *args, **kwargs):  # whatever the storage checks, a NaN that reaches the model
        windows = original(self, *args, **kwargs)
        windows["actions"][...] = float("nan")
        return windows

    monkeypatch.setattr(EpisodeStore, "read_windows", poisoned)
    code, stderr = run_script("train", tiny_run(reacher_pixel_dataset, tmp_path / "run", steps=4), capsys,
                              monkeypatch, tmp_path)
    assert code == 2 and "data hold NaN or inf values (actions)" in stderr and "check the dataset" in stderr
    assert not (tmp_path / "run").exists()


def test_weights_that_diverge_inside_an_optimizer_step_stop_at_the_next_validation(tmp_path, reacher_pixel_dataset,
                                                                                     capsys, monkeypatch):
    from jepa_wm.module import JEPAWorldModel

    original = JEPAWorldModel.optimizer_step

    def diverging_step(self, *args, **kwargs):  # the loss was finite, the step made the weights NaN
        original(self, *args, **kwargs)
        if self.global_step >= 1:
            with torch.no_grad():
                next(self.encoder.parameters()).fill_(float("nan"))

    monkeypatch.setattr(JEPAWorldModel, "optimizer_step", diverging_step)
    code, stderr = run_script("train", tiny_run(reacher_pixel_dataset, tmp_path / "run", steps=4, every=2), capsys,
                              monkeypatch, tmp_path)
    assert code == 2 and "the weights diverged" in stderr and "Traceback" not in stderr, stderr[-1500:]


def test_a_tasks_training_settings_apply_to_its_data_and_the_command_line_wins(tmp_path, reacher_env_cfg):
    from jepa_wm.data.collect import collect

    from jepa_wm.pipeline import train_config

    env_cfg = {**reacher_env_cfg, "train_overrides": ["model.regularizers.temporal=1.0", "model.history=2"]}
    dataset = collect(env_cfg, tmp_path / "data", episodes=2, steps_per_episode=5,
                      policy={"name": "random"}, seed=0, workers=1, episodes_per_shard=2, progress=False)
    cfg = train_config([f"data.path={dataset}", "model.history=3"])
    assert cfg.model.regularizers.temporal == 1.0 and cfg.model.history == 3
    assert train_config(["data.path=nowhere"]).model.regularizers.temporal == 0.0  # no data: the defaults


def test_a_run_saved_in_the_previous_checkpoint_format_resumes_and_loads(tmp_path, reacher_pixel_dataset):
    """Format 2 kept the world model's weights at the top of the state dict (format 3: under world_model.)."""
    run = train(reacher_pixel_dataset, tmp_path / "run", steps=4, every=4)
    last = run / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    checkpoint["state_dict"] = {key.removeprefix("world_model."): value for key, value in checkpoint["state_dict"].items()}
    checkpoint["hyper_parameters"]["format"] = "jepa-wm/2"
    torch.save(checkpoint, last)
    encoded = load_world_model(last).encode(torch.zeros(1, 1, 64, 64, 3, dtype=torch.uint8))
    train(reacher_pixel_dataset, run, "resume=true", steps=8, every=4)
    assert checkpoint_step(last) == 8 and encoded.shape == (1, 1, 1, 8)


def test_the_end_of_training_names_best_and_last_with_their_step_and_score(tmp_path, reacher_pixel_dataset, capsys,
                                                                          monkeypatch):
    from jepa_wm.cli import run

    monkeypatch.chdir(tmp_path)
    assert run("train", tiny_run(reacher_pixel_dataset, tmp_path / "run", steps=8, every=4)) == 0
    lines = capsys.readouterr().out.strip().splitlines()[-3:]
    rows = metric_rows(tmp_path / "run")
    scores = {int(row["step"]) + 1: float(row["val/rollout_error_ratio"]) for row in rows if row.get("val/rollout_error_ratio")}
    best_step = checkpoint_step(tmp_path / "run" / "checkpoints" / "best.ckpt")
    assert lines[0] == f"run: {tmp_path / 'run'}"
    assert lines[1].startswith(f"best.ckpt: {tmp_path / 'run' / 'checkpoints' / 'best.ckpt'} (step {best_step}, "
                               f"val/rollout_error_ratio {scores[best_step]:.3f}; the best")
    assert lines[2].startswith(f"last.ckpt: {tmp_path / 'run' / 'checkpoints' / 'last.ckpt'} (step 8, "
                               f"val/rollout_error_ratio {scores[8]:.3f}; the newest")


def test_training_prints_no_third_party_notice_a_user_cannot_act_on(tmp_path, reacher_pixel_dataset):
    env = {key: value for key, value in os.environ.items() if key != "WANDB_MODE"}
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"),
                             *tiny_run(reacher_pixel_dataset, tmp_path / "run", "wandb.mode=offline", steps=2, every=2)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    for notice in ("anonymous setting has no effect", "💡 Tip", "LeafSpec"):
        assert notice not in result.stderr + result.stdout, notice
