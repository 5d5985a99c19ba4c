"""Peers at our size: LeWM and PLDM trained by stable-worldmodel's own scripts on the suite's data, planned by our
planner on the suite's test episodes, beside our model, random and the oracle on the same episodes.

Stages: ``export`` writes each dynamics group's suite dataset in stable-worldmodel's HDF5 layout
(``jepa_wm.data.interop.export_hdf5``); ``train`` runs ``scripts/train/<peer>.py`` of stable-worldmodel 0.1.1 in the
peers venv (``peer_training``: our 64 x 64 frames, CPU, a wall budget near the suite's); ``evaluate`` plans each
trained peer through ``benchmarks/peers/plan_peers.py`` (our CEM, horizon, replanning and episodes; the latent l2
cost); ``readings`` reads, for ours (the shipped model) and each peer on the same frames of the group's data, what
the embedding holds of the goal coordinates, how its latent distance ranks and how far its rollouts drift
(``benchmarks/peers/readings.py``): the measured why beside the success rates; ``report`` writes the tables. Ours,
random and the oracle are the suite's reports of the same episodes.

    python benchmarks/peers_study.py
    python benchmarks/peers_study.py stages=[report] --write
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import gap
import suite
from _study import Study, comparable, evaluate, report_rows

from jepa_wm.cli import benchmark
from jepa_wm.config import as_overrides, compose, load_group, to_dict
from jepa_wm.errors import ConfigError
from jepa_wm.files import write_json_atomic

HERE = Path(__file__).resolve().parent
SECTION = "Peers at our size: LeWM and PLDM on our data and episodes (cpu)"
STAGES = ("export", "train", "evaluate", "readings", "report")
NAMES = {"lewm": "LeWM", "pldm": "PLDM"}
POLICY_NAMES = {"gcbc": "GCBC (our policy alone)", "distill": "distilled planner (our policy alone)"}


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


def max_epochs(cfg) -> int:
    """The epochs ``peer_training`` asks for: the last of them is the weights file a finished run leaves."""
    for argument in cfg.peer_training:
        key, _, value = argument.lstrip("+").partition("=")
        if key == "trainer.max_epochs":
            return int(value)
    raise ConfigError("peer_training must set trainer.max_epochs=N (a run is finished when its epoch N weights exist)")


def train(cfg, out: Path, group: str, peer: str, seed: int) -> Path:
    """Their training script, in the peers venv; reused when its last epoch's weights are there and were trained
    with the same ``peer_training`` (recorded beside them once the run finished)."""
    name = f"{group}-{peer}-seed{seed}"
    found = peer_checkpoint(out, group, peer, seed)
    settings = found.parent / "peer_training.json" if found is not None else None
    if (found is not None and found.stem == f"weights_epoch_{max_epochs(cfg)}" and settings.is_file()
            and json.loads(settings.read_text()) == list(cfg.peer_training)):
        return found
    script = Path(cfg.swm_source) / "scripts" / "train" / f"{peer}.py"
    command = [cfg.peers_python, str(script), *cfg.peer_training,
               f"data.dataset.name={exported_data(out, group).resolve()}", f"seed={seed}", f"subdir={name}",
               f"output_model_name={name}", f"hydra.run.dir={(peers_home(out) / 'hydra' / name).resolve()}"]
    subprocess.run(command, check=True, env=peer_environment(out))
    found = peer_checkpoint(out, group, peer, seed)
    write_json_atomic(found.parent / "peer_training.json", list(cfg.peer_training))
    return found


def plan(cfg, out: Path, task: str, group: str, checkpoint: Path, results: Path, schedule: list[str]) -> dict:
    """The peer planned by our planner on the suite's episodes with a planner ``schedule`` of the suite's (overrides;
    none: the default MPC); reused when a report with the same settings (and the same checkpoint) is there, as
    ``_study.evaluate`` reuses ours."""
    overrides = ["cost.name=l2", f"env={task}", *as_overrides(cfg.plan), *schedule]
    expected = {**to_dict(compose("plan", overrides)), "checkpoint": str(checkpoint.resolve())}
    report = results / "report.json"
    if not (report.is_file() and comparable(json.loads(report.read_text())["config"]) == comparable(expected)):
        command = [cfg.peers_python, str(HERE / "peers" / "plan_peers.py"), f"checkpoint={checkpoint.resolve()}",
                   f"data={exported_data(out, group).resolve()}", f"out={results}", *overrides]
        subprocess.run(command, check=True, env=peer_environment(out))
    return report_rows(results)


def readings_file(out: Path, group: str, name: str) -> Path:
    return peers_home(out) / "readings" / f"{group}-{name}.json"


def read_model(cfg, out: Path, group: str, name: str, reference: str) -> dict:
    """benchmarks/peers/readings.py on ``reference`` (ours or a peer's weights), in the peers venv; reused when a
    reading of the same model is there."""
    path = readings_file(out, group, name)
    if not (path.is_file() and json.loads(path.read_text())["model"] == reference):
        command = [cfg.peers_python, str(HERE / "peers" / "readings.py"), f"model={reference}",
                   f"data={exported_data(out, group).resolve()}", f"out={path}"]
        subprocess.run(command, check=True, env=peer_environment(out))
    return json.loads(path.read_text())


def policy_checkpoint(out: Path, group: str, kind: str) -> Path:
    """The shipped model of a dynamics group with a goal-conditioned policy of ``kind`` trained into it."""
    return peers_home(out) / "policies" / f"{group}-{kind}.ckpt"


def train_policy(out: Path, group: str, kind: str, dataset: Path) -> Path:
    """Our goal-conditioned policy (configs/policy/<kind>.yaml) on the frozen shipped model of the group, from the
    suite's data (the peers' training data); reused when it is there."""
    from jepa_wm.pipeline import train_policy_for_checkpoint
    from jepa_wm.policy import PolicySettings

    path = policy_checkpoint(out, group, kind)
    if not path.is_file():
        settings = PolicySettings.from_config(to_dict(load_group("policy", kind)))
        train_policy_for_checkpoint(f"pretrained:{group}", settings, dataset=dataset, out=path, progress=False)
    return path


def check_setup(cfg) -> None:
    unknown = sorted(set(cfg.peers) - set(NAMES))
    if unknown:
        raise ConfigError(f"peers={unknown}: not peers of this study (choices: {', '.join(NAMES)})")
    if not Path(cfg.peers_python).is_file():
        raise ConfigError(f"peers_python={cfg.peers_python} does not exist: build the peers venv with "
                          f"`bash benchmarks/peers/setup_venv.sh` (or point peers_python at one)")
    max_epochs(cfg)
    if not (Path(cfg.swm_source) / "scripts" / "train").is_dir():
        raise ConfigError(f"swm_source={cfg.swm_source} holds no scripts/train: check out stable-worldmodel's "
                          f"repository at tag 0.1.1 there (its training scripts are not on PyPI)")


def main(argv: list[str]) -> None:
    study = Study("peers_study", argv, STAGES)
    cfg, out = study.cfg, study.out
    if any(study.wants(stage) for stage in ("train", "evaluate", "readings")):
        check_setup(cfg)
    unknown = sorted(set(cfg.policies) - set(POLICY_NAMES))
    if unknown:
        raise ConfigError(f"policies={unknown}: not policies of this study (choices: {', '.join(POLICY_NAMES)})")
    for group, tasks in suite.task_groups(list(cfg.tasks)).items():
        dataset = out / group / "dataset"
        if study.wants("export"):
            study.run(f"peers export {group}", export, dataset, exported_data(out, group),
                      to_dict(load_group("env", group)))
        for kind in cfg.policies:
            if study.wants("train"):
                study.run(f"peers policy {kind} {group}", train_policy, out, group, kind, dataset)
            if study.wants("evaluate") and policy_checkpoint(out, group, kind).is_file():
                for task in tasks:
                    results = suite.results_directory(out, cfg.plan.split, task, suite.DEFAULT_VARIANT) / kind
                    study.run(f"peers evaluate {task} {kind}", evaluate, results / "seed-0",
                              [f"checkpoint={policy_checkpoint(out, group, kind)}", f"env={task}",
                               *as_overrides(cfg.plan), "act=policy"])
        if study.wants("readings"):
            study.run(f"peers readings {group} ours", read_model, cfg, out, group, "ours", f"pretrained:{group}")
        for peer in cfg.peers:
            for seed in cfg.seeds:
                if study.wants("train"):
                    study.run(f"peers train {group} {peer} seed {seed}", train, cfg, out, group, peer, seed)
                checkpoint = peer_checkpoint(out, group, peer, seed)
                if checkpoint is not None and study.wants("readings"):
                    study.run(f"peers readings {group} {peer} seed {seed}", read_model, cfg, out, group,
                              f"{peer}-seed{seed}", str(checkpoint.resolve()))
                if not study.wants("evaluate") or checkpoint is None:
                    continue
                for task in tasks:
                    for variant, schedule in suite.schedules(cfg, task).items():  # the published one on reacher-offset25
                        results = suite.results_directory(out, cfg.plan.split, task, variant) / peer
                        suffix = "" if variant == suite.DEFAULT_VARIANT else f" {variant}"
                        study.run(f"peers evaluate {task} {peer} seed {seed}{suffix}", plan, cfg, out, task, group,
                                  checkpoint, results / f"seed-{seed}", schedule)
    study.report(SECTION, lambda: report(study.report_cfg, out, study.timings))


def reference(cfg, out: Path, task: str, timings) -> tuple[dict, dict, str] | None:
    """Ours (summary over training seeds), the baselines' rows and where they come from, on the peers' episodes:
    the suite's runs when they are on disk, else the shipped model (the suite's seed 0) as the gap study planned it
    on the same episodes."""
    group = next(name for name in suite.task_groups([task]))
    results = suite.results_directory(out, cfg.plan.split, task, suite.DEFAULT_VARIANT)
    seeds = [0, 1, 2]
    ours = suite.summarize_seeds({seed: report_rows(results / "default" / f"seed-{seed}").get("ours") for seed in seeds})
    baselines = report_rows(results / "baselines")
    source = "the suite's runs"
    train_names = [f"train {group} default seed {seed}" for seed in (ours or {}).get("finished_seeds", [])]
    if not (ours and baselines) and cfg.plan.split == "test":
        shipped = gap.results_directory(out, cfg.plan.split, task, "pretrained", "")
        ours = suite.summarize_seeds({0: report_rows(shipped / "ours").get("ours")})
        baselines, source = report_rows(shipped / "baselines"), "the shipped model (seed 0), planned by benchmarks/gap.py"
        train_names = [f"train {group} default seed 0"]
    if not (ours and baselines):
        return None
    minutes = [timings.seconds[name] / 60 for name in train_names if name in timings.seconds]
    ours["train_min"] = sum(minutes) / len(minutes) if minutes else None
    return ours, baselines, source


def report(cfg, out: Path, timings) -> str | None:
    rows, sources = [], set()
    for task in cfg.tasks:
        group = next(name for name in suite.task_groups([task]))
        results = suite.results_directory(out, cfg.plan.split, task, suite.DEFAULT_VARIANT)
        cells, labels = {}, {}
        for peer in cfg.peers:
            for variant in suite.schedules(cfg, task):
                directory = suite.results_directory(out, cfg.plan.split, task, variant) / peer
                summary = suite.summarize_seeds({seed: report_rows(directory / f"seed-{seed}").get("ours")
                                                 for seed in cfg.seeds})
                if summary:
                    minutes = [timings.seconds[name] / 60 for seed in summary["finished_seeds"]
                               if (name := f"peers train {group} {peer} seed {seed}") in timings.seconds]
                    key = peer if variant == suite.DEFAULT_VARIANT else f"{peer} {variant}"
                    labels[key] = NAMES[peer] + ("" if variant == suite.DEFAULT_VARIANT else f" ({variant})")
                    cells[key] = {**summary, "train_min": sum(minutes) / len(minutes) if minutes else None}
        found = reference(cfg, out, task, timings)
        if not cells or found is None:
            continue
        for kind in cfg.policies:  # on the shipped model (training seed 0)
            summary = suite.summarize_seeds({0: report_rows(results / kind / "seed-0").get("ours")})
            if summary:
                seconds = timings.seconds.get(f"peers policy {kind} {group}")
                cells[kind] = {**summary, "train_min": None if seconds is None else seconds / 60}
        ours, baselines, source = found
        sources.add(f"{task}: {source}")
        for name, cell in {"ours": ours, **cells}.items():
            low, high = cell["pooled_ci95"]
            minutes = "-" if cell["train_min"] is None else f"{cell['train_min']:.1f}"
            label = "ours (jepa-wm)" if name == "ours" else labels.get(name) or POLICY_NAMES[name]
            rows.append(f"| {task} | {label} | {cell['seeds']} | "
                        f"{cell['mean']:.0%} +- {cell['std']:.0%} | [{low:.0%}, {high:.0%}] | "
                        f"{baselines['random']['success_rate']:.0%} | {baselines['oracle']['success_rate']:.0%} | "
                        f"{minutes} | {cell['ms_per_step']:.0f} |")
    if not rows:
        return None
    return "\n".join([
        f"Each model plans the same {cfg.plan.episodes} {cfg.plan.split}-split episodes of the suite (plan seed "
        f"{cfg.plan.seed}, never used for tuning) with our planner and schedule (configs/plan.yaml; the peers with "
        f"the latent l2 cost, through benchmarks/peers/plan_peers.py). LeWM and PLDM: stable-worldmodel 0.1.1's "
        f"training scripts on the suite's data exported to their HDF5 layout ({' '.join(cfg.peer_training)}). Ours, "
        f"random and the oracle: {'; '.join(sorted(sources))}. "
        + (f"Policies ({', '.join(cfg.policies)}): ours, trained into the shipped model (training seed 0) from the "
           f"same data (configs/policy/), acting alone without a planner (act=policy). " if cfg.policies else "")
        + "Train min: wall minutes per model as it ran here (the peers on one core beside other jobs); ours is the "
        "default's 1,500 steps (\"Training throughput\" gives their speed on these cores: a few minutes idle; the "
        "history study's runs took 8-21 min beside other jobs), to compare with the peers' minutes. "
        "ms / decision likewise (a planner's MPC step, or one policy call).",
        "", "| task | model | seeds | success (mean +- std) | pooled 95% CI | random | oracle | train min | ms / decision |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", *rows, "", *why(cfg, out), published(cfg, out)])


def why(cfg, out: Path) -> list[str]:
    """The readings table (stage ``readings``): what each model's embedding holds and how its predictor drifts, on
    the same frames; empty when nothing was read."""
    names = {"ours": "ours (jepa-wm, shipped)"} | {f"{peer}-seed{seed}": f"{NAMES[peer]} (seed {seed})"
                                                   for peer in cfg.peers for seed in cfg.seeds}
    rows, found = [], None
    for group in suite.task_groups(list(cfg.tasks)):
        for name, label in names.items():
            path = readings_file(out, group, name)
            if path.is_file():
                found = json.loads(path.read_text())
                ratio = found["rollout_ratio"]
                rows.append(f"| {group} | {label} | {found['probe_r2']:.2f} | {found['distance_rank_correlation']:.2f} | "
                            f"{ratio[0]:.2f} / {ratio[-1]:.2f} |")
    if not rows:
        return []
    return [
        f"Why, measured on the same frames of each group's data, its last {found['episodes']} episodes "
        f"(benchmarks/peers/readings.py): probe R^2: a ridge probe of the goal coordinates (hinge angles as sin and "
        f"cos) from one frame's embedding, fitted on half of those episodes and scored on the other half; rank corr.: "
        f"Spearman's correlation of latent and true distances over pairs of frames of one episode (one scene, as a "
        f"frame and its goal), averaged over episodes: what planning on a latent distance relies on; rollout ratio: "
        f"open-loop prediction error after 1 and {len(found['rollout_ratio'])} model steps over that of copying the "
        f"last seen embedding, on {found['windows']} windows (< 1 beats 'nothing moves').",
        "", "| group | model | probe R^2 | rank corr. | rollout ratio 1 / 5 steps |", "| --- | --- | ---: | ---: | ---: |",
        *rows, ""]


PUBLISHED = "LeWM 86%, DINO-WM 79%, PLDM 78%, RC-aux 87.2%"


def published(cfg, out: Path) -> str:
    """The published Reacher numbers beside the suite's rows on the same protocol, and the evaluator pitfalls this
    evaluator avoids, each with the test that holds it."""
    cells = []
    for variant in (suite.DEFAULT_VARIANT, "published-schedule"):
        results = suite.results_directory(out, cfg.plan.split, "reacher-offset25", variant) / "default"
        summary = suite.summarize_seeds({seed: report_rows(results / f"seed-{seed}").get("ours") for seed in (0, 1, 2)})
        if summary:
            cells.append(f"{summary['mean']:.0%} +- {summary['std']:.0%} over {summary['seeds']} training seeds with "
                         f"{'our schedule' if variant == suite.DEFAULT_VARIANT else 'the published schedule'}")
    ours = "; ".join(cells) or "the Goal-reaching suite table's reacher-offset25 rows (its reports are not in this out=)"
    return (
        f"Published on stable-worldmodel's Reacher protocol (configs/env/reacher-offset25.yaml; 224 px, 10,000 "
        f"trajectories, their CEM 300 x 30, horizon 5, all 5 blocks executed): {PUBLISHED}. Ours on the same protocol "
        f"at 64 px from the suite's 150 episodes: {ours}. Data, image size and training budget differ from the "
        f"published runs, so the table above, not these numbers, compares models like for like. Evaluator pitfalls "
        f"this evaluator avoids, each held by a test: joint angles compared modulo 2 pi "
        f"(tests/test_envs.py::test_qpos_success_needs_every_joint_within_the_tolerance_and_wraps_angles); goals "
        f"already met before any action counted as such in every report (`solved_at_start`), not hidden in the "
        f"success rate (tests/test_evaluation.py::test_a_goal_already_met_at_the_start_is_counted_in_the_report_and_"
        f"the_goal_sources_that_reject_it_have_none); no environment reset inside an episode or an action repeat "
        f"(tests/test_envs.py::test_no_reset_happens_inside_an_episode_or_an_action_repeat_past_dm_controls_own_time_"
        f"limit), and a goal met inside an action repeat counts "
        f"(tests/test_envs.py::test_a_match_inside_an_action_repeat_counts_as_success).")


if __name__ == "__main__":
    benchmark(main)
