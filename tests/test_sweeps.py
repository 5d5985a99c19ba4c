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


def test_a_sweep_file_runs_offline_here_and_a_rerun_continues_it(tmp_path):
    """The documented offline route: `jepa-wm sweep` proposes runs with W&B's engine, runs the file's command
    (here the shipped planner sweep, with a tiny model and budget), reads each run's metric, and resumes."""
    import json

    from jepa_wm import JEPAWorldModel
    from jepa_wm.config import load_group, model_config, to_dict

    model_cfg = model_config("model.encoder.channels=[8,8,8,8]", "model.predictor.hidden_dim=32")
    model = JEPAWorldModel(model_cfg, (64, 64, 3), 2 * model_cfg.frameskip,
                           env={"config": to_dict(load_group("env", "reacher-easy"))})
    checkpoint = tmp_path / "model.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, checkpoint)
    extra = f"extra=[checkpoint={checkpoint},episodes=2,env.episode_length=3,planner.iterations=1,progress=false]"
    command = [sys.executable, "-m", "jepa_wm", "sweep", f"config={ROOT / 'configs' / 'sweeps' / 'planner.yaml'}",
               "runs=2", extra, f"out={tmp_path / 'sweep'}", "progress=false"]
    env = {key: value for key, value in os.environ.items() if not key.startswith("WANDB_")}  # no key, no server
    result = subprocess.run(command, cwd=tmp_path, env={**env, "WANDB_MODE": "offline"}, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    recorded = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert [run["name"] for run in recorded["runs"]] == ["run-000", "run-001"]
    for run in recorded["runs"]:
        report = json.loads((tmp_path / "sweep" / run["name"] / "report.json").read_text())
        ours = next(row for row in report["results"] if row["method"] == "ours")
        assert run["metric"] == ours["success_rate"] and run["exit_code"] == 0
        assert all(report["config"][key.split(".")[0]] is not None for key in run["parameters"])
    assert recorded["runs"][0]["parameters"] != recorded["runs"][1]["parameters"]  # the grid's next point
    assert "success_rate" in result.stdout and "run-001" in result.stdout

    again = subprocess.run([*command[:-4], "runs=3", *command[-3:]], cwd=tmp_path, env={**env, "WANDB_MODE": "offline"},
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    runs = json.loads((tmp_path / "sweep" / "sweep.json").read_text())["runs"]
    assert [run["name"] for run in runs] == ["run-000", "run-001", "run-002"] and runs[:2] == recorded["runs"]
