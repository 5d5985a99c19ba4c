"""Rebuild the shipped pretrained models (``jepa_wm/pretrained/``) from scratch, with their cards.

Runs the goal-reaching suite (``benchmarks/suite.py``, ``configs/suite.yaml``; finished stages are
reused) and ships, for every task, the world model of training seed ``seed`` (default 0): weights and
config only, the env config of that task inside (so ``plan.py checkpoint=pretrained:TASK`` plans that
task), and a card with the command, data, training steps and the test-split success of that very
model with its 95% interval, beside random and the oracle on the same episodes.

    python benchmarks/zoo.py                  # the whole zoo, from nothing (hours on 2 CPU cores)
    python benchmarks/zoo.py stages=[report]  # only re-export from a finished suite
"""

from __future__ import annotations

import os
from pathlib import Path

import suite
from _study import report_rows

from jepa_wm.checkpoint import export_weights, load_world_model, read_checkpoint
from jepa_wm.cli import benchmark
from jepa_wm.config import (
    command_line,
    compose,
    load_group,
    to_dict,
)
from jepa_wm.errors import ConfigError
from jepa_wm.files import write_json_atomic
from jepa_wm.pipeline import golden_readings
from jepa_wm.references import PRETRAINED_DIR, file_sha256

MAX_BYTES = 5 * 1024 * 1024


def export_task(cfg, task: str, group: str, seed: int, out: Path) -> dict | None:
    """Ship the ``seed`` model of ``task``; returns its card (None while its suite run is unfinished)."""
    model = next(iter(cfg.models))  # the suite's model (the first, when it compares several)
    results = out / "results" / task / suite.DEFAULT_VARIANT
    ours = report_rows(results / model / f"seed-{seed}").get("ours")
    by_method = report_rows(results / "baselines")
    if not (ours and by_method):
        return None
    checkpoint = read_checkpoint(suite.run_directory(out, group, model, seed) / "checkpoints" / cfg.checkpoint)
    hparams = checkpoint["hyper_parameters"]
    env_cfg = {**to_dict(load_group("env", task)), "obs_type": hparams["cfg"]["obs_type"]}
    hparams["env"] = {**hparams["env"], "config": env_cfg, "dataset": f"{group} dataset of benchmarks/suite.py"}
    path = PRETRAINED_DIR / f"{task}.ckpt"
    exported = export_weights(checkpoint, path.with_name(f".{path.name}.export"))  # the shipped file stays until it fits
    size = exported.stat().st_size
    if size > MAX_BYTES:
        exported.unlink()
        raise ConfigError(f"the {task} model is {size / 2**20:.1f} MB, over the zoo's 5 MB budget; ship a smaller model")
    os.replace(exported, path)
    run_config = hparams["run_config"]
    kind = (checkpoint.get("learned_cost") or {}).get("kind", "none")
    card = {
        "name": task, "task": task, "format": hparams["format"], "seed": seed,
        "command": "python benchmarks/zoo.py",
        "training_command": f"jepa-wm train data.path=DATASET seed={seed} " + " ".join(
            f"{key}={value}" for key, value in suite_train_overrides(cfg)),
        "training_steps": int(checkpoint["global_step"]),
        "data": {"episodes": cfg.collect.episodes, "steps_per_episode": cfg.collect.steps_per_episode,
                 "policy": to_dict(compose("collect").policy), "collected_with": group},
        "model": {key: run_config["model"][key] for key in ("obs_type", "history", "frameskip")}
        | {"encoder": run_config["model"]["encoder"]["name"], "predictor": run_config["model"]["predictor"]["name"]},
        "learned_cost": kind,  # what cost.name=auto plans with, alone (learned) or + the latent distance (sum):
        "planning_cost": (env_cfg.get("planning_cost") or {}).get(kind, "sum"),  # the task's choice for this kind
        "test_success": {"rate": ours["success_rate"], "ci95": ours["ci95"], "episodes": ours["episodes"],
                         "split": ours["split"], "plan_seed": ours["seed"], "final_distance": ours["final_distance"]},
        "random_success": by_method["random"]["success_rate"], "oracle_success": by_method["oracle"]["success_rate"],
        "size_bytes": size,
        "weights_sha256": file_sha256(path),  # checked whenever pretrained:NAME loads
        "golden": golden_readings(load_world_model(path)),  # what the model computes on one fixed input
    }
    write_json_atomic(PRETRAINED_DIR / f"{task}.json", card)
    return card


def suite_train_overrides(cfg) -> list[tuple[str, str]]:
    from jepa_wm.config import as_overrides

    return [tuple(item.split("=", 1)) for item in as_overrides(cfg.train)
            if not item.startswith(("wandb.", "trainer.enable_progress_bar"))]


def main(argv: list[str]) -> None:
    options = [arg for arg in argv if not arg.startswith("seed=")]  # the rest set configs/suite.yaml, checked there
    seed = command_line([arg for arg in argv if arg.startswith("seed=")], {"seed": 0})[0]["seed"]
    cfg = compose("suite", [arg for arg in options if arg != "--write"])
    if set(cfg.stages) - {"report"}:  # run what is missing (everything, from scratch)
        suite.main([*options, f"seeds=[{','.join(str(s) for s in sorted({seed, *cfg.seeds}))}]"])
    out = Path(cfg.out)
    for group, tasks in suite.task_groups(list(cfg.tasks)).items():
        for task in tasks:
            card = export_task(cfg, task, group, seed, out)
            if card is None:
                print(f"pretrained:{task}: not shipped, its suite run is not finished "
                      f"(python benchmarks/suite.py \"tasks=[{task}]\" \"seeds=[{seed}]\")")
                continue
            print(f"pretrained:{task}: {card['size_bytes'] / 2**20:.2f} MB, test success {card['test_success']['rate']:.0%}")


if __name__ == "__main__":
    benchmark(main)
