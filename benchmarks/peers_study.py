"""Peers at our size: LeWM and PLDM trained by stable-worldmodel's own scripts on the suite's data, planned by our
planner on the suite's test episodes, beside our model, random and the oracle on the same episodes.

Stages: ``export`` writes each dynamics group's suite dataset in stable-worldmodel's HDF5 layout
(``jepa_wm.data.interop.export_hdf5``); ``train`` runs ``scripts/train/<peer>.py`` of stable-worldmodel 0.1.1 in the
peers venv (``peer_training``: our 64 x 64 frames, CPU, a wall budget near the suite's); ``evaluate`` plans each
trained peer through ``benchmarks/peers/plan_peers.py`` (our CEM, horizon, replanning and episodes; the latent l2
cost); ``report`` writes the table. Ours, random and the oracle are the suite's reports of the same episodes.

    python benchmarks/peers_study.py
    python benchmarks/peers_study.py stages=[report] --write
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import suite
from _study import Study, report_rows

from jepa_wm.cli import benchmark
from jepa_wm.config import as_overrides, load_group, to_dict
from jepa_wm.errors import ConfigError

HERE = Path(__file__).resolve().parent
SECTION = "Peers at our size: LeWM and PLDM on our data and episodes (cpu)"
STAGES = ("export", "train", "evaluate", "report")
NAMES = {"lewm": "LeWM", "pldm": "PLDM"}


def peers_home(out: Path) -> Path:
    return out / "peers"


def exported_data(out: Path, group: str) -> Path:
    return peers_home(out) / "data" / f"{group}.h5"


def peer_checkpoint(out: Path, group: str, peer: str, seed: int) -> Path | None:
    """The last epoch's weights of a finished training run (None before it finished)."""
    directory = peers_home(out) / "home" / "checkpoints" / f"{group}-{peer}-seed{seed}"
    epochs = sorted(directory.glob("weights_epoch_*.pt"), key=lambda path: int(path.stem.rsplit("_", 1)[1]))
    return epochs[-1] if epochs else None


def peer_environment(out: Path) -> dict:
    home = peers_home(out).resolve()
    return {**os.environ, "STABLEWM_HOME": str(home / "home"), "SPT_CACHE_DIR": str(home / "spt"),
            "WANDB_MODE": "disabled", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}


def export(dataset: Path, target: Path, env_cfg: dict) -> None:
    from jepa_wm.data.interop import export_hdf5, physics_split_of

    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        export_hdf5(dataset, target, physics_split=physics_split_of(env_cfg))


def train(cfg, out: Path, group: str, peer: str, seed: int) -> Path:
    """Their training script, in the peers venv; reused when its last epoch's weights are there."""
    name = f"{group}-{peer}-seed{seed}"
    expected = int(next(arg.split("=", 1)[1] for arg in cfg.peer_training if arg.lstrip("+").startswith("trainer.max_epochs=")))
    found = peer_checkpoint(out, group, peer, seed)
    if found is not None and found.stem == f"weights_epoch_{expected}":
        return found
    script = Path(cfg.swm_source) / "scripts" / "train" / f"{peer}.py"
    command = [cfg.peers_python, str(script), *cfg.peer_training,
               f"data.dataset.name={exported_data(out, group).resolve()}", f"seed={seed}", f"subdir={name}",
               f"output_model_name={name}", f"hydra.run.dir={(peers_home(out) / 'hydra' / name).resolve()}"]
    subprocess.run(command, check=True, env=peer_environment(out))
    return peer_checkpoint(out, group, peer, seed)


def plan(cfg, out: Path, task: str, group: str, checkpoint: Path, results: Path) -> dict:
    """The peer planned by our planner on the suite's episodes (reused when its report is there)."""
    if not (results / "report.json").is_file():
        command = [cfg.peers_python, str(HERE / "peers" / "plan_peers.py"), f"checkpoint={checkpoint.resolve()}",
                   f"data={exported_data(out, group).resolve()}", f"env={task}", f"out={results}",
                   *as_overrides(cfg.plan)]
        subprocess.run(command, check=True, env=peer_environment(out))
    return report_rows(results)


def check_setup(cfg) -> None:
    unknown = sorted(set(cfg.peers) - set(NAMES))
    if unknown:
        raise ConfigError(f"peers={unknown}: not peers of this study (choices: {', '.join(NAMES)})")
    if not Path(cfg.peers_python).is_file():
        raise ConfigError(f"peers_python={cfg.peers_python} does not exist: build the peers venv with "
                          f"`bash benchmarks/peers/setup_venv.sh` (or point peers_python at one)")
    if not (Path(cfg.swm_source) / "scripts" / "train").is_dir():
        raise ConfigError(f"swm_source={cfg.swm_source} holds no scripts/train: check out stable-worldmodel's "
                          f"repository at tag 0.1.1 there (its training scripts are not on PyPI)")


def main(argv: list[str]) -> None:
    study = Study("peers", argv, STAGES)
    cfg, out = study.cfg, study.out
    if any(study.wants(stage) for stage in ("train", "evaluate")):
        check_setup(cfg)
    for group, tasks in suite.task_groups(list(cfg.tasks)).items():
        dataset = out / group / "dataset"
        if study.wants("export"):
            study.run(f"peers export {group}", export, dataset, exported_data(out, group),
                      to_dict(load_group("env", group)))
        for peer in cfg.peers:
            for seed in cfg.seeds:
                if study.wants("train"):
                    study.run(f"peers train {group} {peer} seed {seed}", train, cfg, out, group, peer, seed)
                checkpoint = peer_checkpoint(out, group, peer, seed)
                if not study.wants("evaluate") or checkpoint is None:
                    continue
                for task in tasks:
                    results = suite.results_directory(out, cfg.plan.split, task, suite.DEFAULT_VARIANT) / peer
                    study.run(f"peers evaluate {task} {peer} seed {seed}", plan, cfg, out, task, group, checkpoint,
                              results / f"seed-{seed}")
    study.report(SECTION, lambda: report(cfg, out, study.timings))


def report(cfg, out: Path, timings) -> str | None:
    rows = []
    for task in cfg.tasks:
        group = next(name for name, tasks in suite.task_groups([task]).items())
        results = suite.results_directory(out, cfg.plan.split, task, suite.DEFAULT_VARIANT)
        ours = suite.summarize_task(results, "default", [0, 1, 2])
        if ours is None:
            continue
        cells = {"ours": ours}
        for peer in cfg.peers:
            summary = suite.summarize_task(results, peer, list(cfg.seeds))
            if summary:
                minutes = [timings.seconds.get(f"peers train {group} {peer} seed {seed}", 0) / 60 for seed in cfg.seeds]
                cells[peer] = {**summary, "train_min": sum(minutes) / len(minutes)}
        if len(cells) == 1:
            continue
        ours_minutes = [timings.seconds.get(f"train {group} default seed {seed}", 0) / 60 for seed in ours["finished_seeds"]]
        cells["ours"]["train_min"] = sum(ours_minutes) / len(ours_minutes) if ours_minutes else 0.0
        for name, cell in cells.items():
            label = "ours (jepa-wm)" if name == "ours" else NAMES[name]
            low, high = cell["pooled_ci95"]
            rows.append(f"| {task} | {label} | {cell['seeds']} | {cell['mean']:.0%} +- {cell['std']:.0%} | "
                        f"[{low:.0%}, {high:.0%}] | {cell['random']:.0%} | {cell['oracle']:.0%} | "
                        f"{cell['train_min']:.1f} | {cell['ms_per_step']:.0f} |")
    if not rows:
        return None
    return "\n".join([
        f"Each model plans the same {cfg.plan.episodes} {cfg.plan.split}-split episodes of the suite (plan seed "
        f"{cfg.plan.seed}) with our planner and schedule (configs/plan.yaml; the peers with the latent l2 cost, "
        f"through benchmarks/peers/plan_peers.py). LeWM and PLDM: stable-worldmodel 0.1.1's training scripts on the "
        f"suite's data exported to their HDF5 layout ({' '.join(cfg.peer_training)}). Ours: the suite's runs. "
        f"Random and the oracle: the suite's, on the same episodes. Train min: wall minutes per model on this machine.",
        "", "| task | model | seeds | success (mean +- std) | pooled 95% CI | random | oracle | train min | ms / MPC step |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", *rows])


if __name__ == "__main__":
    benchmark(main)
