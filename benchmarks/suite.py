"""The goal-reaching suite: every benchmark task, K training seeds, test episodes nothing was tuned on.

For each group of tasks with the same dynamics it collects one dataset, trains one world model per
training seed, and evaluates every seed on every task of the group, on the test split (``split=test``:
episodes drawn from a seed stream that no setting, checkpoint or training length was chosen on).
Random and oracle run once per task on the same episodes (and once more per other control rate a model of
the study acts at: each model is compared with baselines that decide as often as it). Every stage is reused
when it is finished (a dataset, a checkpoint at max_steps, a report with the same settings), so the suite can
be run in parts, killed and rerun; each stage's wall time is recorded.

    python benchmarks/suite.py                                       # everything (configs/suite.yaml)
    python benchmarks/suite.py "tasks=[point_mass-easy]" "stages=[collect,train]"
    python benchmarks/suite.py stages=[report] --write                # the table into BENCHMARKS.md

The table: per task, ours as mean +- std of the success rate over training seeds with the 95% Wilson
interval of all their episodes pooled, random, oracle, and ours / oracle.
"""

from __future__ import annotations

import functools
import json
import statistics
from pathlib import Path

from _report import pyplot, save_figure
from _study import Study, Timings, checkpoint_frameskip, evaluate, only_these, report_rows

from jepa_wm.cli import benchmark
from jepa_wm.config import as_overrides, compose, load_group, to_dict
from jepa_wm.data.envs.tasks import dynamics_differences
from jepa_wm.errors import CheckpointError
from jepa_wm.files import write_json_atomic
from jepa_wm.pipeline import collect_stage, train_config, train_stage
from jepa_wm.planning.evaluate import wilson_interval

STAGES = ("collect", "train", "baselines", "evaluate", "report")
FIGURE = Path(__file__).resolve().parent / "figures" / "suite.png"
DEFAULT_VARIANT = "replan-every-block"  # the default MPC (plan.yaml): the studies call it the same


@functools.cache
def env_config(task: str) -> dict:
    return to_dict(load_group("env", task))


def task_groups(tasks: list[str]) -> dict[str, list[str]]:
    """Tasks grouped by dynamics. A group is named after the first task with its dynamics in the suite's list
    (configs/suite.yaml), else in ``tasks``; that task's env config collects. The name never depends on what else
    is asked for, so a study of reacher-offset25 alone finds the dataset and models the suite made for reacher-easy."""
    candidates = [*compose("suite", []).tasks, *tasks]
    groups: dict[str, list[str]] = {}
    for task in tasks:
        home = next(name for name in candidates if not dynamics_differences(env_config(name), env_config(task)))
        groups.setdefault(home, []).append(task)
    return groups


def run_directory(out: Path, group: str, model: str, seed: int) -> Path:
    return out / group / model / f"seed-{seed}"


def results_directory(out: Path, split: str, task: str, schedule: str) -> Path:
    """Test reports in ``results/``; reports on other splits apart (``results-dev/``), so that a study choosing
    settings on dev episodes never mixes its reports with the test reports of the same runs."""
    return out / ("results" if split == "test" else f"results-{split}") / task / schedule


def split_tag(split: str) -> str:
    """What stage names add for a split other than test (their timings are kept apart too)."""
    return "" if split == "test" else f" ({split})"


def main(argv: list[str], config: str = "suite", section: str = "Goal-reaching suite (cpu)", reporter=None) -> None:
    """Run the stages of ``configs/<config>.yaml``; with ``--write`` put the report into BENCHMARKS.md."""
    study = Study(config, argv, STAGES)
    cfg, out = study.cfg, study.out
    collect, train, plan = as_overrides(cfg.collect), as_overrides(cfg.train), as_overrides(cfg.plan)
    models = {name: list(extra) for name, extra in only_these(cfg.models, cfg.get("only"), "only", "models").items()}
    tag = split_tag(cfg.plan.split)

    for group, tasks in task_groups(list(cfg.tasks)).items():
        dataset = out / group / "dataset"
        if study.wants("collect"):
            study.run(f"collect {group}", collect_stage, load_group("env", group), dataset, collect,
                      workers=cfg.workers, progress=False)
        task_rate = task_frameskip(dataset, train)
        for model, model_overrides in models.items():  # each model is evaluated as soon as it is trained
            frameskip = task_frameskip(dataset, [*train, *model_overrides])  # a model may act at another rate
            if study.wants("train"):
                for seed in cfg.seeds:
                    study.run(f"train {group} {model} seed {seed}", train_stage, dataset,
                              run_directory(out, group, model, seed), [*train, *model_overrides], seed)
            for task in tasks:
                for schedule, extra in schedules(cfg, task).items():
                    results = results_directory(out, cfg.plan.split, task, schedule)
                    if study.wants("baselines"):  # once per task and rate: later models reuse the report
                        rate = "" if frameskip == task_rate else f" at {model}'s rate"
                        study.run(f"baselines {task} {schedule}{rate}{tag}", evaluate,
                                  baselines_directory(results, frameskip, task_rate),
                                  [f"env={task}", "baselines=true", "methods=[random,oracle]",
                                   f"mpc.frameskip={frameskip}", *plan, *extra])
                    if not study.wants("evaluate"):
                        continue
                    for seed in cfg.seeds:
                        checkpoint = run_directory(out, group, model, seed) / "checkpoints" / cfg.checkpoint
                        study.run(f"evaluate {task} {schedule} {model} seed {seed}{tag}", evaluate,
                                  results / model / f"seed-{seed}",
                                  [f"checkpoint={checkpoint}", f"env={task}", *plan, *extra])
    study.report(section, lambda: (reporter or report)(study.report_cfg, out, study.timings))


def task_frameskip(dataset: Path, train: list[str]) -> int:
    """Env steps per model step of a task's models, as ``train_stage`` trains them (the study's training settings
    after the task's own ``train_overrides``): random and the oracle act at that rate beside them."""
    return train_config([f"data.path={dataset}", *train]).model.frameskip


def baselines_directory(results: Path, frameskip: int, task_rate: int | None) -> Path:
    """Where random and the oracle beside models acting every ``frameskip`` env steps are planned: ``baselines/``
    at the rate of the task's own models (``task_frameskip``), ``baselines-frameskip-N/`` beside a model of a study
    that sets another (levers' ``frameskip-3``): each model is compared with baselines that decide as often as it."""
    return results / "baselines" if frameskip == task_rate else results / f"baselines-frameskip-{frameskip}"


def baselines_beside(results: Path, model: str, seeds) -> dict:
    """The baselines' rows (by method) planned at the rate of ``model``'s runs ({} when none were): the rate its
    runs' checkpoints act at, matched with the ``baselines*`` reports' own settings."""
    reports = [results / model / f"seed-{seed}" / "report.json" for seed in seeds]
    checkpoints = [json.loads(report.read_text())["config"].get("checkpoint") for report in reports if report.is_file()]
    try:
        frameskip = checkpoint_frameskip(str(checkpoints[0])) if checkpoints and checkpoints[0] else None
    except CheckpointError:  # the runs' checkpoints are not on this machine: the baselines at the task's own rate
        frameskip = None
    candidates = [results / "baselines"] + ([baselines_directory(results, frameskip, None)] if frameskip else [])
    for directory in candidates:
        report = directory / "report.json"
        if report.is_file() and frameskip in (None, plan_frameskip(json.loads(report.read_text())["config"])):
            return report_rows(directory)
    return {}


def plan_frameskip(config: dict) -> int:
    """Env steps per decision of the simulator's rows of a plan report (reports before ``mpc.frameskip`` was set
    planned at the pixel model's default)."""
    return int((config.get("mpc") or {}).get("frameskip") or load_group("model", "pixels").frameskip)


def schedules(cfg, task: str) -> dict[str, list[str]]:
    """The planner schedules a task is evaluated with: the default MPC, and the task's ``variants``."""
    return {DEFAULT_VARIANT: [], **{name: list(extra) for name, extra in (cfg.variants.get(task) or {}).items()}}


def summarize_seeds(ours_by_seed: dict) -> dict | None:
    """Rows of one model by training seed (None: not finished) -> mean +- std over seeds and the pooled Wilson
    interval of all their episodes."""
    ours = [row for row in ours_by_seed.values() if row]
    if not ours:
        return None
    rates = [row["success_rate"] for row in ours]
    successes = sum(round(row["success_rate"] * row["episodes"]) for row in ours)
    episodes = sum(row["episodes"] for row in ours)
    return {
        "seeds": len(ours), "finished_seeds": [seed for seed, row in ours_by_seed.items() if row],
        "episodes": ours[0]["episodes"], "rates": rates, "mean": statistics.mean(rates),
        "std": statistics.stdev(rates) if len(rates) > 1 else 0.0, "pooled_ci95": wilson_interval(successes, episodes),
        "final_distance": statistics.mean(row["final_distance"] for row in ours),
        "ms_per_step": statistics.mean(row["ms_per_step"] for row in ours),
    }


def summarize_task(results: Path, model: str, seeds) -> dict | None:
    """Ours over training seeds (mean, std, pooled Wilson), random and oracle, from the reports on disk."""
    ours = summarize_seeds({seed: report_rows(results / model / f"seed-{seed}").get("ours") for seed in seeds})
    baselines = baselines_beside(results, model, seeds)
    if not ours or not baselines:
        return None
    return {**ours, "random": baselines["random"]["success_rate"], "oracle": baselines["oracle"]["success_rate"],
            "oracle_ci95": baselines["oracle"]["ci95"]}


def report(cfg, out: Path, timings: Timings) -> str:
    """The suite's table (and ``suite.json``, and the figure) from the reports on disk."""
    summaries = {}
    for task in cfg.tasks:
        for schedule in schedules(cfg, task):
            for model in cfg.models:
                summary = summarize_task(results_directory(out, cfg.plan.split, task, schedule), model, cfg.seeds)
                if summary:
                    summaries[(task, schedule, model)] = summary
    write_json_atomic(out / "suite.json", {"/".join(key): summary for key, summary in summaries.items()})
    if summaries:
        plot_suite({(task, schedule): s for (task, schedule, _), s in summaries.items()}, FIGURE)
    lines = [
        f"Up to {len(cfg.seeds)} training seeds per task ({', '.join(map(str, cfg.seeds))}; the seeds column says how "
        f"many have finished); each evaluated on the same "
        f"{cfg.plan.episodes} {cfg.plan.split}-split episodes (plan seed {cfg.plan.seed}"
        f"{', never used for tuning' if cfg.plan.split == 'test' else ''}), as are random "
        f"and the oracle (the same planner and step weighting with the true simulator and the task's own distance). "
        f"Data: {cfg.collect.episodes} episodes x {cfg.collect.steps_per_episode} steps per dynamics group; "
        f"training: {cfg.train.trainer.max_steps} steps; planning with checkpoints/{cfg.checkpoint}. Ours: mean +- "
        f"std of the success rate over training seeds, then the 95% Wilson interval of all their episodes pooled. "
        f"Figure: [benchmarks/figures/suite.png](benchmarks/figures/suite.png).",
        "",
        "| task | planner schedule | seeds | ours (mean +- std) | pooled 95% CI | random | oracle | ours / oracle | final distance | ms / MPC step |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (task, schedule, model), s in summaries.items():
        ratio = s["mean"] / s["oracle"] if s["oracle"] > 0 else float("nan")
        name = task if len(cfg.models) == 1 else f"{task} ({model})"
        lines.append(f"| {name} | {schedule} | {s['seeds']} | {s['mean']:.0%} +- {s['std']:.0%} | [{s['pooled_ci95'][0]:.0%}, "
                     f"{s['pooled_ci95'][1]:.0%}] | {s['random']:.0%} | {s['oracle']:.0%} | {ratio:.2f} | "
                     f"{s['final_distance']:.3f} | {s['ms_per_step']:.0f} |")
    groups = task_groups(list(cfg.tasks))
    tag = split_tag(cfg.plan.split)
    own = ({f"collect {group}" for group in groups}
           | {f"train {group} {model} seed {seed}" for group in groups for model in cfg.models for seed in cfg.seeds}
           | {f"{stage} {task} {schedule}{suffix}" for task in cfg.tasks for schedule in schedules(cfg, task)
              for stage, suffix in [("baselines", tag)]
              + [("baselines", f" at {model}'s rate{tag}") for model in cfg.models]
              + [("evaluate", f" {model} seed {seed}{tag}") for model in cfg.models for seed in cfg.seeds]})
    stage_times = sorted((name, seconds) for name, seconds in timings.seconds.items() if name in own)  # not the studies'
    if stage_times:
        total = sum(seconds for _, seconds in stage_times)
        lines += ["", f"Stage wall times (s; {total / 3600:.1f} h in all; parts of the suite run side by side on the "
                  f"same cores take longer each): "
                  + "; ".join(f"{name} {seconds:.0f}" for name, seconds in stage_times) + "."]
    return "\n".join(lines)


def plot_suite(summaries: dict, path: Path) -> None:
    """Success per task: ours (mean +- std over seeds), random and oracle."""
    plt = pyplot()
    import numpy as np

    labels = [task if variant == DEFAULT_VARIANT else f"{task}\n({variant})" for task, variant in summaries]
    x = np.arange(len(labels))
    ours = np.array([s["mean"] for s in summaries.values()])
    std = np.array([s["std"] for s in summaries.values()])
    figure, axis = plt.subplots(figsize=(max(6, 1.4 * len(labels)), 4))
    axis.bar(x - 0.27, [s["random"] for s in summaries.values()], 0.27, label="random", color="C7")
    axis.bar(x, ours, 0.27, yerr=std, capsize=4, label="ours (mean +- std over seeds)", color="C0")
    axis.bar(x + 0.27, [s["oracle"] for s in summaries.values()], 0.27, label="oracle", color="C2")
    axis.set_xticks(x, labels, fontsize=8)
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("success rate (test episodes)")
    axis.legend(fontsize=8)
    save_figure(figure, path)


if __name__ == "__main__":
    benchmark(main)
