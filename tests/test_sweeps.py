"""Every sweep file is a valid W&B sweep whose agent command trains or plans offline and logs the sweep's metric."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from wandb.sdk.launch.sweeps.utils import create_sweep_command_args, load_sweep_config

sweeps = pytest.importorskip("sweeps", reason="the sweeps package ships with the [dev] extra")

ROOT = Path(__file__).resolve().parents[1]
SWEEP_FILES = sorted((ROOT / "configs" / "sweeps").glob("*.yaml"))


def agent_command(config: dict, sampled: dict) -> list[str]:
    """The command line a W&B agent builds: the file's `command` with its macros filled in."""
    program = shutil.which(config["program"]) or config["program"]  # the console command of the installed package
    macros = {"${env}": [], "${interpreter}": [sys.executable], "${program}": [program],
              "${args_no_hyphens}": create_sweep_command_args({"args": sampled})["args_no_hyphens"]}
    command = []
    for part in config["command"]:
        command += macros.get(part, [part])
    return command


def subcommand(config: dict) -> str:
    return config["command"][config["command"].index("${program}") + 1]


def small_run_overrides(program: str, tmp_path: Path, dataset: Path, checkpoint: Path) -> list[str]:
    """Appended after the agent's arguments (later overrides win): a tiny, fast version of the run."""
    if program == "train":
        return [f"data.path={dataset}", f"out={tmp_path / 'run'}", "trainer.max_steps=2", "trainer.val_check_interval=2",
                "trainer.limit_val_batches=1", "data.batch_size=4", "data.num_workers=0",
                "trainer.enable_progress_bar=false", "model.encoder.channels=[8,8,8,8]", "model.predictor.hidden_dim=32",
                "learned_cost=none", "eval.every_n_steps=2", "eval.episodes=1", "eval.video=false",
                "eval.plan=[planner.samples=16,planner.elites=4,planner.iterations=1,env.episode_length=3]"]
    return [f"checkpoint={checkpoint}", "episodes=1", "env.episode_length=3", f"out={tmp_path / 'plan'}",
            "progress=false", "planner.iterations=1"]


@pytest.mark.parametrize("path", SWEEP_FILES, ids=[p.stem for p in SWEEP_FILES])
def test_sweep_file_is_valid_and_its_agent_command_runs_offline(path, tmp_path, reacher_pixel_dataset):
    config = load_sweep_config(str(path))
    assert sweeps.schema_violations_from_proposed_config(config) == []
    run = sweeps.next_run(config, [], validate=True)
    assert set(run.config) == set(config["parameters"])

    checkpoint = tmp_path / "model.ckpt"
    if subcommand(config) == "plan":
        from jepa_wm import JEPAWorldModel
        from jepa_wm.config import load_group, model_config, to_dict

        model_cfg = model_config("model.encoder.channels=[8,8,8,8]", "model.predictor.hidden_dim=32")
        model = JEPAWorldModel(model_cfg, (64, 64, 3), 2 * model_cfg.frameskip, env={"config": to_dict(load_group("env", "reacher-easy"))})
        torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, checkpoint)

    command = agent_command(config, run.config) + small_run_overrides(subcommand(config), tmp_path,
                                                                      reacher_pixel_dataset, checkpoint)
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SWEEP_ID": "offline-test", "WANDB_DIR": str(tmp_path)}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # What the sweep optimises reached W&B: the offline run's record file holds the metric's key (its protobuf
    # records store keys as plain UTF-8).
    records = [path.read_bytes() for path in tmp_path.rglob("run-*.wandb")]
    assert records and any(config["metric"]["name"].encode() in record for record in records), config["metric"]
