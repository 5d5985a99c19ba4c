"""Where does a world model fall short of the oracle? The gap, task by task, split into its parts.

Every row plans the same test episodes as the suite (``configs/gap.yaml``):

- ``ours``: the model with its default cost; ``ours-4x-budget``: the same with 4 x the planner's samples (if
  this closes the gap, the planner is the limit);
- ``ours-decoded``: the same model planning with the task-aware cost (``learned_cost=decoded``: a probe of the
  success coordinates on the frozen embedding; if this closes the gap, the cost was the limit);
- ``oracle``: the true simulator with the task's success distance (the ceiling of this planner budget), and
  ``oracle-whole-pose``: the true simulator comparing every joint of the pose, as a cost that compares whole
  pictures asks (if this falls short of the oracle, asking for the whole picture costs success even with
  perfect dynamics); ``random``: the floor;
- the probe's R^2 on encodings and on the model's own predictions 1..5 steps ahead (if R^2 falls along the
  horizon, prediction is the limit; if it is low on encodings already, the encoding is, or the probe: it is fitted
  on the model's own episodes, and a joint that moves little within an episode gives it few distinct values);
- ``latent_shift``: how far the embedding moves when one success joint alone turns by 0.5 rad in a rendered
  frame, no fitting involved: whether the encoding sees that joint at all.

    python benchmarks/gap.py "tasks=[hopper-stand]"          # collects its data if missing; resumable
    python benchmarks/gap.py stages=[report] --write          # the table into BENCHMARKS.md
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from _report import drafted, pyplot, save_figure
from _study import Study, checkpoint_frameskip, evaluate, only_these, report_rows
from suite import run_directory, task_groups

from jepa_wm.checkpoint import read_checkpoint
from jepa_wm.cli import benchmark
from jepa_wm.config import as_overrides, load_group, to_dict
from jepa_wm.errors import ConfigError
from jepa_wm.files import write_json_atomic
from jepa_wm.learned_cost import CostTrainingSettings
from jepa_wm.pipeline import collect_stage, train_cost_for_checkpoint, train_stage
from jepa_wm.planning.evaluate import goal_moves, most_split_joint, success_by_goal_move

STAGES = ("collect", "train", "heads", "evaluate", "report")
# The figure, and beside it the record of the rows it and the table show (gap.json): a run that measures some tasks
# replaces their rows and keeps the others' (measured earlier, maybe on another machine), so the two always agree.
FIGURE = Path(__file__).resolve().parent / "figures" / "gap.png"
SECTION = "Where the gap to the oracle is (cpu)"
OURS_ROWS = ("ours", "ours-4x-budget", "ours-decoded", "ours-decoded+l2")  # planned by our model (others: the simulator)
HEAD_ROWS = ("ours-decoded", "ours-decoded+l2")  # planned with the copy of the checkpoint that carries the decoded cost
COLUMNS = ("random", "ours", "ours-4x-budget", "ours-decoded", "ours-decoded+l2", "oracle-whole-pose", "oracle")


def models(cfg, out: Path, group: str) -> dict[str, str]:
    """``label -> checkpoint`` of the models measured for a dynamics group."""
    if cfg.models == "pretrained":
        return {"pretrained": f"pretrained:{group}"}
    if cfg.models == "suite":
        return {f"seed-{seed}": str(run_directory(out, group, "default", seed) / "checkpoints" / cfg.checkpoint)
                for seed in cfg.seeds}
    raise ConfigError(f"models={cfg.models}: choose pretrained (the shipped models) or suite (the suite's runs)")


def with_head(out: Path, group: str, label: str, kind: str) -> Path:
    """The copy of a model's checkpoint that carries the task-aware cost."""
    return out / "gap" / "heads" / group / f"{label}-{kind}.ckpt"


def main(argv: list[str]) -> None:
    study = Study("gap", argv, STAGES)
    cfg, out = study.cfg, study.out
    plan = as_overrides(cfg.plan)
    kind = cfg.heads.learned_cost
    rows = only_these(cfg.rows, cfg.only_rows, "only_rows", "rows")  # checked before anything runs
    for group, tasks in task_groups(list(cfg.tasks)).items():
        dataset = out / group / "dataset"
        if study.wants("collect"):
            study.run(f"collect {group}", collect_stage, load_group("env", group), dataset, as_overrides(cfg.collect),
                      workers=cfg.workers, progress=False)
        for label, checkpoint in models(cfg, out, group).items():
            if cfg.models == "suite" and study.wants("train"):  # the suite's run (reused when it is finished)
                seed = int(label.removeprefix("seed-"))
                study.run(f"train {group} default seed {seed}", train_stage, dataset,
                          run_directory(out, group, "default", seed), as_overrides(cfg.train), seed)
            head = with_head(out, group, label, kind)
            if study.wants("heads") and not head.is_file():
                settings = CostTrainingSettings.from_config(to_dict(load_group("learned_cost", kind)))
                study.run(f"gap head {kind} {group} {label}", train_cost_for_checkpoint, checkpoint, settings,
                          dataset=dataset, out=head, progress=False)
            if not study.wants("evaluate"):
                continue
            for task in tasks:
                for row, extra in rows.items():
                    if row in OURS_ROWS:
                        model = head if row in HEAD_ROWS else checkpoint
                        overrides = [f"checkpoint={model}", f"env={task}", *plan, *extra]
                    else:  # the simulator's rows need no model: the task and the model's frameskip
                        overrides = [f"env={task}", "baselines=true",
                                     f"mpc.frameskip={checkpoint_frameskip(str(checkpoint))}",
                                     *plan, *extra]
                    study.run(f"gap {cfg.plan.split} {task} {label} {row}", evaluate,
                              results_directory(out, cfg.plan.split, task, label, row), overrides)
    study.report(SECTION, lambda: report(study.report_cfg, out))


def results_directory(out: Path, split: str, task: str, label: str, row: str) -> Path:
    """Test reports in ``gap/results/``, other splits' apart (``gap/results-dev/``), as the suite keeps them."""
    return out / "gap" / ("results" if split == "test" else f"results-{split}") / task / label / row


def probe_metrics(head: Path) -> dict:
    """The decoded cost's probe R^2 (encodings, then 1..5 predicted steps) stored in its checkpoint."""
    if not head.is_file():
        return {}
    return dict((read_checkpoint(head).get("learned_cost") or {}).get("metrics") or {})


def task_rows(cfg, out: Path, task: str, label: str) -> dict:
    """``column -> report row`` of one task and model, from the reports on disk."""
    found = {}
    for row in cfg.rows:
        for method, values in report_rows(results_directory(out, cfg.plan.split, task, label, row)).items():
            found[row if method == "ours" or row == "oracle-whole-pose" else method] = values
    return found


def episodes_changed(first: dict, second: dict) -> tuple[int, int]:
    """Episodes ``second`` reaches that ``first`` does not, and the other way round (same episodes, same order)."""
    a, b = first.get("reached"), second.get("reached")
    if not a or not b or len(a) != len(b):
        return (0, 0)
    return (sum(y and not x for x, y in zip(a, b)), sum(x and not y for x, y in zip(a, b)))


def where_the_gap_is(rows: dict, probe: dict, shifts: dict | None = None) -> str:
    """What the rows say limits a model, every part that holds: ``none`` at >= 0.9 x the oracle; ``planner`` or
    ``cost`` when 4 x the budget or the decoded cost wins back half the gap; ``encoding`` when the probe reads the
    success coordinates, or any one of them, badly from encodings (R^2 < 0.5), unless the embedding moves with
    that joint at least half as much as the median joint (``shifts``, see ``latent_shift``): then it is "unread"; ``prediction`` when its R^2 falls by >= 0.2 over 5
    predicted steps; ``whole picture`` when comparing every joint costs the oracle itself half the gap."""
    ours, oracle = rows["ours"]["success_rate"], rows["oracle"]["success_rate"]
    if ours >= 0.9 * oracle:
        return "none"
    gap = oracle - ours
    parts = [name for name, column in (("planner", "ours-4x-budget"), ("cost", "ours-decoded"))
             if column in rows and rows[column]["success_rate"] - ours >= gap / 2]
    encoded, predicted = probe.get("probe_r2"), probe.get("probe_r2_predicted_5")
    by_joint = probe_by_joint(probe)
    weakest = min(by_joint, key=by_joint.get) if by_joint else None
    # A joint the probe cannot read, though the embedding moves with it as much as with the others (``shifts``), is
    # in the encoding: the probe fitted on the model's own episodes is what falls short there, not the encoder.
    seen = bool(shifts and weakest in shifts and shifts[weakest] >= 0.5 * statistics.median(shifts.values()))
    if weakest is not None and by_joint[weakest] < 0.5 and seen:
        parts.append(f"{weakest} unread (probe R^2 {by_joint[weakest]:.2f}, latent shift {shifts[weakest]:.2f})")
    elif encoded is not None and encoded < 0.5:
        parts.append(f"encoding (R^2 {encoded:.2f})")
    elif weakest is not None and by_joint[weakest] < 0.5:  # success needs every joint: one the encoding lacks is enough
        parts.append(f"encoding ({weakest} R^2 {by_joint[weakest]:.2f})")
    elif encoded is not None and predicted is not None and encoded - predicted >= 0.2:
        parts.append(f"prediction (R^2 {encoded:.2f} -> {predicted:.2f})")
    whole = rows.get("oracle-whole-pose")
    if whole and oracle - whole["success_rate"] >= gap / 2:
        parts.append(f"whole picture (oracle {whole['success_rate']:.0%})")
    return "; ".join(parts) or "not explained by these rows"


def probe_by_joint(probe: dict) -> dict[str, float]:
    """``joint -> R^2`` of the decoded cost's probe on encodings, per success coordinate (``probe_r2/<joint>``)."""
    return {key.removeprefix("probe_r2/"): value for key, value in probe.items() if key.startswith("probe_r2/")}


def latent_shift(checkpoint: str, env_cfg: dict, turn: float = 0.5, poses: int = 20) -> dict[str, float]:
    """``joint -> median distance`` between the embeddings of a frame and of the same frame with only that success
    joint turned by ``turn`` (rad), over ``poses`` episode starts: does the encoding see each joint? No probe is
    fitted, so a joint the probe cannot read but the encoding moves with is told apart from one it does not see."""
    import numpy as np
    import torch

    from jepa_wm.checkpoint import load_world_model
    from jepa_wm.data.envs import make_env
    from jepa_wm.references import resolve_checkpoint

    env = make_env({**env_cfg, "obs_type": "pixels"})
    if env.success.joints is None and env.success.geom is not None:
        env.close()
        return {}  # a geom's position: no joint to turn
    model = load_world_model(resolve_checkpoint(checkpoint), device="cpu").eval()
    joints = list(env.success.joints) if env.success.joints is not None else list(range(env.physics.model.nq))
    shifts = {name: [] for name in env.coordinate_names}
    for pose in range(poses):
        env.reset(seed=10_000 + pose)
        start = env.get_state()
        frames = []
        for index in [None, *joints]:
            state = start.copy()
            if index is not None:
                state[index] += turn
            env.set_state(state)
            frames.append(env.observation()["pixels"])
        with torch.no_grad():
            z = model.encode(torch.as_tensor(np.stack(frames))[:, None]).flatten(1)
        for name, shifted in zip(env.coordinate_names, z[1:]):
            shifts[name].append(float((shifted - z[0]).norm()))
    env.close()
    return {name: float(np.median(values)) for name, values in shifts.items()}


def joints_off(row: dict) -> str:
    """``"hinge 12, proximal 8 of 13"``: per success joint, the failed episodes that ended beyond its tolerance there
    (qpos tasks; "-" for a position criterion or a report written before it was counted)."""
    off = row.get("off_at_failure")
    if not off:
        return "-"
    ranked = sorted(off.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{name} {count}" for name, count in ranked) + f" of {row['failures']}"


def by_goal(task: str, row: dict, plan) -> str:
    """``"hinge: 35% of 20 / 97% of 30"``: ours' success where the goal moves a success joint / keeps it, for the
    joint where the two differ most (qpos tasks whose goals move some joint in some episodes only; else "-", as for
    a report written before it recorded each episode). Reports record the split (``by_goal_move``); one written
    before that is split by drawing its episodes again."""
    if "reached" not in row:
        return "-"
    split = row.get("by_goal_move")
    if split is None:
        from jepa_wm.data.envs import make_env

        env = make_env(to_dict(load_group("env", task)))
        try:
            moves = goal_moves(env, row["episodes"], int(plan.seed), plan.split)
        finally:
            env.close()
        split = success_by_goal_move(row["reached"], moves)
    if not split:
        return "-"
    joint = most_split_joint(split)
    moved, kept = split[joint]["moved"], split[joint]["kept"]
    return f"{joint}: {moved[0] / moved[1]:.0%} of {moved[1]} / {kept[0] / kept[1]:.0%} of {kept[1]}"


def report(cfg, out: Path) -> str:
    measured = ("each task's shipped model (training seed 0)" if cfg.models == "pretrained"
                else "the suite's runs, seeds " + ", ".join(map(str, cfg.seeds)))
    untuned = ", never used for tuning" if cfg.plan.split == "test" else ""
    lines = [
        f"Each row plans the same {cfg.plan.episodes} {cfg.plan.split} episodes (plan seed {cfg.plan.seed}{untuned}). "
        f"Models: {measured}. "
        "Success rate with its 95% Wilson interval; 4x budget: 4 x the CEM samples and elites; decoded: the same "
        "model planning with the task-aware cost alone (a probe of the success coordinates on its frozen embedding, "
        "trained on the model's own data), decoded + l2: with it summed with the latent distance; oracle whole-pose: "
        "the true simulator comparing every joint of the pose "
        "instead of the success coordinates. Probe R^2: the decoded cost's probe on held-out encodings, and on the "
        "model's own predictions 1 and 5 model steps ahead (lowest: the success coordinate it reads worst from encodings). "
        "Latent shift: the median distance between the embeddings of a frame and of the same frame with one success "
        "joint turned by 0.5 rad (20 starts; no fitting): whether the encoding sees that joint at all, where a low "
        "probe R^2 may also be the probe's (fitted on the model's own episodes). decoded +/-: episodes the decoded cost reaches that the "
        "default does not / the other way round. Joints off: per success joint, how many of ours' failed "
        "episodes ended beyond its tolerance there (qpos tasks). Goal moves / keeps: ours' success on the episodes whose goal "
        "asks a success joint to move beyond its tolerance / to stay within it, for the joint where the two differ most. Limit: what the rows say holds the model back (benchmarks/gap.py, "
        "where_the_gap_is: none at >= 0.9 x the oracle; planner or cost when 4x budget or decoded wins back half the "
        "gap; encoding when the probe's R^2 on encodings, or on one success coordinate, is < 0.5 (unread instead when the latent shift says the encoding moves with that joint as much as half the median joint); prediction when it falls by >= 0.2 over 5 steps; "
        "whole picture when the whole-pose oracle loses half the gap). "
        f"Figure: [benchmarks/figures/gap.png](benchmarks/figures/gap.png).",
        "",
        "| task | model | random | ours | 4x budget | decoded | decoded +/- | decoded + l2 | oracle whole-pose | oracle "
        "| ours / oracle | probe R^2 enc / 1 / 5 steps | latent shift per joint turned 0.5 rad | ms / step ours / decoded "
        "| ours' failures: joints off at the end | ours where the goal moves / keeps a joint | limit |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- | --- | --- |",
    ]
    measured = {}  # (task, label) -> the row's table line and success per column
    for group, tasks in task_groups(list(cfg.tasks)).items():
        for label, checkpoint in models(cfg, out, group).items():
            probe = probe_metrics(with_head(out, group, label, cfg.heads.learned_cost))
            for task in tasks:
                rows = task_rows(cfg, out, task, label)
                if not {"ours", "oracle"} <= set(rows):
                    continue
                summary = {column: rows[column]["success_rate"] for column in COLUMNS if column in rows}

                def cell(column):
                    if column not in rows:
                        return "-"
                    row = rows[column]
                    low, high = row["ci95"]
                    return f"{row['success_rate']:.0%} [{low:.0%}, {high:.0%}]"

                oracle = rows["oracle"]["success_rate"]
                ratio = f"{rows['ours']['success_rate'] / oracle:.2f}" if oracle else "-"
                gained, lost = episodes_changed(rows["ours"], rows.get("ours-decoded", {}))
                r2 = " / ".join(f"{probe[key]:.2f}" if key in probe else "-"
                                for key in ("probe_r2", "probe_r2_predicted_1", "probe_r2_predicted_5"))
                by_joint = probe_by_joint(probe)
                if by_joint:  # the success coordinate the encoding holds least of
                    weakest = min(by_joint, key=by_joint.get)
                    r2 += f" (lowest: {weakest} {by_joint[weakest]:.2f})"
                ms = " / ".join(f"{rows[c]['ms_per_step']:.0f}" if c in rows else "-" for c in ("ours", "ours-decoded"))
                shifts = latent_shift(checkpoint, to_dict(load_group("env", task)))
                shift = ", ".join(f"{name} {value:.2f}" for name, value in shifts.items()) or "-"
                line = (f"| {task} | {label} | {cell('random')} | {cell('ours')} | {cell('ours-4x-budget')} | "
                        f"{cell('ours-decoded')} | +{gained} / -{lost} | {cell('ours-decoded+l2')} | "
                        f"{cell('oracle-whole-pose')} | "
                        f"{cell('oracle')} | {ratio} | {r2} | {shift} | {ms} | {joints_off(rows['ours'])} | "
                        f"{by_goal(task, rows['ours'], cfg.plan)} | "
                        f"{where_the_gap_is(rows, probe, shifts)} |")
                measured[(task, label)] = {"task": task, "label": label, "line": line, "success": summary}
    suffix = "" if cfg.plan.split == "test" else f"-{cfg.plan.split}"
    settings = {"split": cfg.plan.split, "episodes": int(cfg.plan.episodes), "seed": int(cfg.plan.seed)}
    kept = recorded_rows(FIGURE.with_name(f"gap{suffix}.json"), settings, measured)
    lines.extend(row["line"] for row in kept)
    if kept:
        plot({(row["task"], row["label"]): row["success"] for row in kept}, FIGURE.with_name(f"gap{suffix}.png"),
             cfg.plan.split)
    return "\n".join(lines)


def recorded_rows(record: Path, settings: dict, measured: dict) -> list[dict]:
    """The rows measured now merged into those recorded earlier (a task measured again replaces its row, in
    place), written back (into the draft folder when the report is not written into BENCHMARKS.md: the committed
    record describes the committed table); rows recorded under other plan settings (another episode count or
    seed) are dropped, since they planned other episodes."""
    earlier = json.loads(record.read_text()) if record.is_file() else {}
    rows = earlier.get("rows", []) if earlier.get("settings") == settings else []
    merged = {(row["task"], row["label"]): row for row in rows}
    for key, row in measured.items():
        merged[key] = row  # dicts keep the first insertion's place: a row measured again stays where it was
    kept = list(merged.values())
    if kept:
        target = drafted(record)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(target, {"settings": settings, "rows": kept})
    return kept


def plot(summaries: dict, path: Path, split: str = "test") -> None:
    """Success per task and row: floor, ours and its variants, the two oracles."""
    import numpy as np

    plt = pyplot()
    labels = [task if label == "pretrained" else f"{task}\n({label})" for task, label in summaries]
    x = np.arange(len(labels))
    width = 0.8 / len(COLUMNS)
    figure, axis = plt.subplots(figsize=(max(6, 1.6 * len(labels)), 4))
    for index, column in enumerate(COLUMNS):
        values = [summary.get(column, np.nan) for summary in summaries.values()]
        axis.bar(x + (index - (len(COLUMNS) - 1) / 2) * width, values, width, label=column, color=f"C{index}")
    axis.set_xticks(x, labels, fontsize=8)
    axis.set_ylim(0, 1.3)  # room above the bars for the legend
    axis.set_yticks(np.linspace(0, 1, 6))
    axis.set_ylabel(f"success rate ({split} episodes)")
    axis.legend(fontsize=7, ncol=4, loc="upper center")
    save_figure(figure, path)


if __name__ == "__main__":
    benchmark(main)
