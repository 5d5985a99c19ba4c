"""The suite's summary: the numbers BENCHMARKS.md reports are computed from the reports on disk correctly."""

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _study  # noqa: E402
import suite  # noqa: E402
from jepa_wm.errors import ConfigError  # noqa: E402
from jepa_wm.planning.evaluate import wilson_interval  # noqa: E402


def write_report(directory: Path, rows: list[dict]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.json").write_text(json.dumps({"results": rows, "config": {}}))


def row(method: str, rate: float, episodes: int = 50, distance: float = 0.1) -> dict:
    return {"method": method, "success_rate": rate, "episodes": episodes, "final_distance": distance,
            "ms_per_step": 30.0, "ci95": list(wilson_interval(round(rate * episodes), episodes))}


def test_a_tasks_dynamics_group_is_the_suites_whatever_else_a_study_asks_for():
    """A study of reacher-offset25 alone must find the dataset and models the suite keeps under reacher-easy."""
    everything = suite.task_groups(["reacher-easy", "reacher-hard", "reacher-offset25", "finger-spin"])
    assert everything == {"reacher-easy": ["reacher-easy", "reacher-hard", "reacher-offset25"],
                          "finger-spin": ["finger-spin"]}
    assert suite.task_groups(["reacher-offset25"]) == {"reacher-easy": ["reacher-offset25"]}
    assert suite.task_groups(["finger-spin", "reacher-hard"]) == {"finger-spin": ["finger-spin"],
                                                                  "reacher-easy": ["reacher-hard"]}
    assert suite.task_groups(["acrobot-swingup"]) == {"acrobot-swingup": ["acrobot-swingup"]}  # not in the suite


def test_ours_is_the_mean_and_std_over_training_seeds_with_the_pooled_wilson_interval(tmp_path):
    write_report(tmp_path / "baselines", [row("random", 0.1), row("oracle", 0.9)])
    for seed, rate in enumerate([0.8, 0.9, 0.7]):
        write_report(tmp_path / "default" / f"seed-{seed}", [row("ours", rate, distance=0.1 * (seed + 1))])
    summary = suite.summarize_task(tmp_path, "default", [0, 1, 2])
    assert summary["seeds"] == 3 and summary["mean"] == pytest.approx(0.8)
    assert summary["std"] == pytest.approx(0.1)  # sample std over seeds, not over episodes
    assert summary["pooled_ci95"] == pytest.approx(wilson_interval(120, 150))
    assert summary["final_distance"] == pytest.approx(0.2)
    assert (summary["random"], summary["oracle"]) == (0.1, 0.9)


def test_a_task_counts_only_the_seeds_that_finished_and_none_without_baselines(tmp_path):
    write_report(tmp_path / "default" / "seed-0", [row("ours", 0.6)])
    assert suite.summarize_task(tmp_path, "default", [0, 1, 2]) is None  # no random/oracle on these episodes yet
    write_report(tmp_path / "baselines", [row("random", 0.0), row("oracle", 1.0)])
    summary = suite.summarize_task(tmp_path, "default", [0, 1, 2])
    assert summary["seeds"] == 1 and summary["std"] == 0.0 and summary["pooled_ci95"] == pytest.approx(wilson_interval(30, 50))


def test_training_length_reads_each_checkpoints_own_validation_row_and_compares_on_test_episodes(tmp_path):
    import training_length
    from omegaconf import OmegaConf

    run = tmp_path / "run" / "csv"
    run.mkdir(parents=True)
    (run / "metrics.csv").write_text(
        "step,train/loss,val/loss,val/rollout_error_ratio,val/probe_r2,val/distance_rank_correlation\n"
        "499,1.0,,,,\n"
        "499,,0.5,0.20,0.90,0.30\n"   # validation after step 500 is logged at step 499
        "999,,0.4,0.10,0.95,0.60\n")
    assert training_length.validation_at(tmp_path / "run", 500) == {
        "rollout ratio": 0.20, "probe R2": 0.90, "distance rank corr.": 0.30}
    assert training_length.validation_at(tmp_path / "run", 1000)["distance rank corr."] == 0.60
    assert training_length.validation_at(tmp_path / "run", 1500) == {}

    results = tmp_path / "results" / "reacher-easy" / suite.DEFAULT_VARIANT
    write_report(results / "baselines", [row("random", 0.1), row("oracle", 1.0)])
    points = [("reacher-easy", 0, 500, 0.5, {}), ("reacher-easy", 0, 1000, 0.9, {}), ("reacher-easy", 0, 5000, 0.9, {}),
              ("reacher-easy", 1, 500, 0.8, {}), ("reacher-easy", 1, 5000, 0.6, {})]
    assert training_length.test_models(points, "reacher-easy", 0, 5000) == {  # ties: the earlier checkpoint
        "default-5000-steps": 5000, "default-5000-steps-best-dev": 1000}
    assert training_length.test_models(points, "point_mass-easy", 0, 5000) == {"default-5000-steps": 5000}
    for seed, (short, long, best) in enumerate([(0.8, 0.6, 0.9), (0.9, 0.7, 0.8)]):
        write_report(results / "default" / f"seed-{seed}", [row("ours", short)])
        for name, rate in zip(training_length.test_models(points, "reacher-easy", seed, 5000), (long, best)):
            write_report(training_length.test_results(tmp_path, "reacher-easy", name) / f"seed-{seed}", [row("ours", rate)])
    cfg = OmegaConf.create({"tasks": ["reacher-easy", "point_mass-easy"], "seeds": [0, 1], "test_plan": {"episodes": 50}})
    table = training_length.test_comparison(cfg, tmp_path, points, 5000)
    assert ("| reacher-easy | 85% +- 7% (2 seeds) | 65% +- 7% (2 seeds) | 85% +- 7% (2 seeds) | 1000, 500 | 100% |"
            in table)
    assert "point_mass-easy" not in table  # nothing measured there yet


def test_ablation_rows_average_each_variants_seeds_validation_and_training_time(tmp_path, monkeypatch):
    import ablation
    from omegaconf import OmegaConf

    monkeypatch.setattr(ablation, "FIGURE", tmp_path / "ablation.png")
    results = tmp_path / "results" / "reacher-easy" / suite.DEFAULT_VARIANT
    write_report(results / "baselines", [row("random", 0.0), row("oracle", 1.0)])
    timings = _study.Timings(tmp_path / "timings.json")
    for model, rates, ratios in [("default", [0.8, 0.9], [0.10, 0.20]), ("no-anti-collapse", [0.1], [1.5])]:
        for seed, (rate, ratio) in enumerate(zip(rates, ratios)):
            write_report(results / model / f"seed-{seed}", [row("ours", rate)])
            metrics = suite.run_directory(tmp_path, "reacher-easy", model, seed) / "csv" / "metrics.csv"
            metrics.parent.mkdir(parents=True)
            metrics.write_text("step,train/loss,val/rollout_error_ratio,val/probe_r2,val/distance_rank_correlation\n"
                               f"999,,9.0,0.0,0.0\n1499,1.0,,,\n1499,,{ratio},0.9,0.5\n")  # the last validation row counts
            timings.seconds[f"train reacher-easy {model} seed {seed}"] = 60.0 * (seed + 1)
    still_training = suite.run_directory(tmp_path, "reacher-easy", "default", 2) / "csv" / "metrics.csv"
    still_training.parent.mkdir(parents=True)
    still_training.write_text("step,val/rollout_error_ratio,val/probe_r2,val/distance_rank_correlation\n499,5.0,0.1,0.1\n")
    cfg = OmegaConf.create({"tasks": ["reacher-easy"], "seeds": [0, 1, 2], "models": {"default": [], "no-anti-collapse": []},
                            "train": {"trainer": {"max_steps": 1500}}, "collect": {"episodes": 150, "steps_per_episode": 100},
                            "plan": {"episodes": 50, "split": "test"}})
    table = ablation.report(cfg, tmp_path, timings)
    assert ("| reacher-easy | default | 2 | 85% +- 7% | [77%, 91%] | 0.100 | 0.150 | 0.90 | 0.50 | 1.5 |" in table)
    assert "| reacher-easy | no-anti-collapse | 1 | 10% | [4%, 21%] | 0.100 | 1.500 | 0.90 | 0.50 | 1.0 |" in table
    assert "reacher-easy 0% / 100%" in table and (tmp_path / "ablation.png").is_file()


def test_the_levers_study_reads_only_dev_reports_and_never_the_suites_test_reports_of_the_same_runs(tmp_path,
                                                                                                      monkeypatch):
    import levers
    from jepa_wm.config import load_command_config
    from omegaconf import OmegaConf

    monkeypatch.setattr(levers, "FIGURE", tmp_path / "levers.png")
    cfg = OmegaConf.merge(load_command_config("levers"), {"out": str(tmp_path), "tasks": ["finger-spin"]})
    assert cfg.plan.split == "dev" and "default" in cfg.models  # the study chooses defaults: never on test
    for split, rate in [("test", 0.9), ("dev", 0.4)]:  # the same run planned on both splits
        results = suite.results_directory(tmp_path, split, "finger-spin", suite.DEFAULT_VARIANT)
        write_report(results / "baselines", [row("random", 0.1), row("oracle", 1.0)])
        write_report(results / "default" / "seed-0", [row("ours", rate)])
    assert suite.results_directory(tmp_path, "test", "t", "s") != suite.results_directory(tmp_path, "dev", "t", "s")
    table = levers.report(cfg, tmp_path, _study.Timings(tmp_path / "timings.json"))
    assert "| finger-spin | default | 1 | 40% |" in table and "30 dev-split episodes" in table
    assert "90%" not in table and levers.FIGURE.name in table


def test_a_report_from_before_act_counts_as_the_planner_and_policy_budgets_matter_only_when_seeding():
    old = {"planner": {"name": "cem"}, "cost": {"name": "l2"}, "out": "a"}
    now = {**old, "act": "planner", "policy_planner": {"samples": 64}, "out": "b"}
    assert _study.comparable(old) == _study.comparable(now)
    seeded = {**now, "act": "policy+planner"}
    assert _study.comparable(seeded) != _study.comparable({**seeded, "policy_planner": {"samples": 32}})
    assert _study.comparable(old) != _study.comparable({**old, "act": "policy"})


def test_the_acting_study_reports_each_way_to_act_beside_random_and_oracle_on_the_same_episodes(tmp_path):
    import acting

    from jepa_wm.config import compose

    cfg = compose("acting", [f"out={tmp_path}", "tasks=[reacher-easy]", "seeds=[0,1]", "splits.test=50"])
    results = tmp_path / "results" / "reacher-easy" / "replan-every-block"
    write_report(results / "baselines", [row("random", 0.1), row("oracle", 1.0)])
    for way, rates in {"planner": [0.9, 0.8], "distill": [0.7, 0.9], "distill+planner": [1.0, 0.9]}.items():
        for seed, rate in enumerate(rates):
            write_report(results / acting.way_name(cfg, way) / f"seed-{seed}", [row("ours", rate)])
    assert acting.way_name(cfg, "planner") == "history2@temporal+l2"  # the cost study's own evaluation
    text = acting.report(cfg, tmp_path)
    lines = {line.split(" | ")[3]: line for line in text.splitlines() if line.startswith("| reacher-easy")}
    assert set(lines) == {"planner", "distill", "distill+planner"}  # gcbc has no reports: no row
    assert "| 2 | 85% +- 7%" in lines["planner"] and "| 10% | 100% | 0.85 |" in lines["planner"]
    assert "| 2 | 95% +- 7%" in lines["distill+planner"]


def test_baselines_are_reused_whatever_cost_ours_would_plan_with():
    baselines = {"methods": ["random", "oracle"], "planner": {"name": "cem"}, "cost": {"name": "l2"}}
    assert _study.comparable(baselines) == _study.comparable({**baselines, "cost": {"name": "auto"}, "act": "policy",
                                                             "oracle_planner": "cem"})
    assert _study.comparable(baselines) != _study.comparable({**baselines, "planner": {"name": "mppi"}})
    ours = {"methods": None, "planner": {"name": "cem"}, "cost": {"name": "l2"}}
    assert _study.comparable(ours) != _study.comparable({**ours, "cost": {"name": "auto"}})


def test_the_gap_table_puts_every_row_of_a_task_on_one_line_with_the_episodes_the_decoded_cost_changed(tmp_path, monkeypatch):
    import gap

    from jepa_wm.config import compose

    monkeypatch.setattr(gap, "FIGURE", tmp_path / "gap.png")
    cfg = compose("gap", [f"out={tmp_path}", "tasks=[hopper-stand]"])
    reached = {"ours": [1, 1, 0, 0], "ours-4x-budget": [1, 0, 0, 0], "ours-decoded": [0, 1, 1, 1],
               "ours-decoded+l2": [1, 0, 0, 0]}
    off = {"ours": {"failures": 2, "off_at_failure": {"knee": 1, "foot": 2}}}  # where ours' two failures fell short
    for name, episodes in reached.items():
        write_report(gap.results_directory(tmp_path, "test", "hopper-stand", "pretrained", name),
                     [{**row("ours", sum(episodes) / 4, episodes=4), "reached": episodes, **off.get(name, {})}])
    write_report(gap.results_directory(tmp_path, "test", "hopper-stand", "pretrained", "baselines"),
                 [row("random", 0.0, episodes=4), row("oracle", 1.0, episodes=4)])
    write_report(gap.results_directory(tmp_path, "test", "hopper-stand", "pretrained", "oracle-whole-pose"),
                 [row("oracle", 0.5, episodes=4)])
    text = gap.report(cfg, tmp_path)
    line = next(line for line in text.splitlines() if line.startswith("| hopper-stand"))
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells[2:11] == ["0% [0%, 49%]", "50% [15%, 85%]", "25% [5%, 70%]", "75% [30%, 95%]", "+2 / -1",
                           "25% [5%, 70%]", "50% [15%, 85%]", "100% [51%, 100%]", "0.50"]
    assert cells[11] == "- / - / -"  # no decoded head trained yet: no probe readings
    shifts = dict(part.rsplit(" ", 1) for part in cells[12].split(", "))  # the shipped model, frames rendered here
    assert set(shifts) == {"waist", "hip", "knee", "ankle"} and all(float(v) > 0 for v in shifts.values())
    assert cells[14] == "foot 2, knee 1 of 2"
    joint, counts = cells[15].split(": ")  # ours' success where the goal moves that joint / keeps it
    moved, kept = (part.split("% of ") for part in counts.split(" / "))
    assert joint in shifts and int(moved[1]) + int(kept[1]) == 4
    assert cells[16] == "cost; whole picture (oracle 50%)"  # decoded wins back half the gap; so does the whole pose
    assert (tmp_path / "gap.png").is_file()


def test_the_gap_table_and_figure_keep_the_rows_of_tasks_measured_earlier_and_replace_those_measured_again(tmp_path, monkeypatch):
    import _report
    import gap

    from jepa_wm.config import compose

    monkeypatch.setattr(gap, "FIGURE", tmp_path / "gap.png")
    monkeypatch.setattr(gap, "latent_shift", lambda *args: {})
    drawn = []
    monkeypatch.setattr(gap, "plot", lambda summaries, path, split: drawn.append((dict(summaries), path)))
    settings = {"split": "test", "episodes": 50, "seed": 0}
    earlier = [{"task": task, "label": "pretrained", "line": f"| {task} | earlier | 50% |", "success": {"ours": 0.5}}
               for task in ("reacher-easy", "hopper-stand", "cheetah-run")]
    (tmp_path / "gap.json").write_text(json.dumps({"settings": settings, "rows": earlier}))
    for name, rate in (("ours", 0.75), ("baselines", None)):
        reports = [row("ours", rate, episodes=4)] if rate else [row("random", 0.0, episodes=4), row("oracle", 1.0, episodes=4)]
        write_report(gap.results_directory(tmp_path, "test", "hopper-stand", "pretrained", name), reports)
    text = gap.report(compose("gap", [f"out={tmp_path}", "tasks=[hopper-stand]"]), tmp_path)
    table = [line.split(" | ")[:2] for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert table == [["| reacher-easy", "earlier"], ["| hopper-stand", "pretrained"], ["| cheetah-run", "earlier"]]
    summaries, path = drawn[-1]
    assert path == tmp_path / "gap.png" and summaries[("hopper-stand", "pretrained")]["ours"] == 0.75
    assert list(summaries) == [(task, "pretrained") for task in ("reacher-easy", "hopper-stand", "cheetah-run")]
    assert [row["task"] for row in json.loads((tmp_path / "gap.json").read_text())["rows"]] == [
        "reacher-easy", "hopper-stand", "cheetah-run"]
    # a report not written into BENCHMARKS.md leaves the committed record as the committed table describes it
    monkeypatch.setattr(_report, "FIGURES_DIR", tmp_path)
    committed = (tmp_path / "gap.json").read_text()
    with _report.drafting_figures(tmp_path / "drafts"):
        # planned on other episodes (here: another plan seed), the rows recorded before are not comparable: dropped
        text = gap.report(compose("gap", [f"out={tmp_path}", "tasks=[hopper-stand]", "plan.seed=1"]), tmp_path)
    assert not [line for line in text.splitlines() if line.startswith("| reacher-easy")]
    assert (tmp_path / "gap.json").read_text() == committed
    assert [row["task"] for row in json.loads((tmp_path / "drafts" / "gap.json").read_text())["rows"]] == ["hopper-stand"]


@pytest.mark.parametrize("rates, probe, limit", [
    ({"ours": 0.92, "oracle": 1.0}, {}, "none"),
    ({"ours": 0.5, "oracle": 1.0, "ours-4x-budget": 0.8}, {"probe_r2": 0.9, "probe_r2_predicted_5": 0.85}, "planner"),
    ({"ours": 0.5, "oracle": 1.0, "ours-decoded": 0.74}, {"probe_r2": 0.9, "probe_r2_predicted_5": 0.85},
     "not explained by these rows"),  # wins back under half the gap
    ({"ours": 0.56, "oracle": 0.98}, {"probe_r2": 0.21, "probe_r2_predicted_5": 0.19}, "encoding (R^2 0.21)"),
    ({"ours": 0.56, "oracle": 0.96}, {"probe_r2": 0.6, "probe_r2_predicted_5": 0.55, "probe_r2/proximal": 0.9,
                                      "probe_r2/hinge": 0.1}, "encoding (hinge R^2 0.10)"),
    ({"ours": 0.68, "oracle": 1.0, "oracle-whole-pose": 0.9}, {"probe_r2": 0.83, "probe_r2_predicted_5": 0.49},
     "prediction (R^2 0.83 -> 0.49)"),
    ({"ours": 0.5, "oracle": 1.0, "ours-decoded": 0.9, "oracle-whole-pose": 0.6}, {},
     "cost; whole picture (oracle 60%)"),
])
def test_the_gap_table_names_each_part_that_holds_a_model_back(rates, probe, limit):
    import gap

    assert gap.where_the_gap_is({column: {"success_rate": rate} for column, rate in rates.items()}, probe) == limit
    # With the embedding moving as much with the unread joint as with the others, the probe is what falls short.
    shifts = {"proximal": 2.3, "distal": 2.2, "hinge": 2.6}
    if limit == "encoding (hinge R^2 0.10)":
        assert gap.where_the_gap_is({column: {"success_rate": rate} for column, rate in rates.items()}, probe,
                                    shifts) == "hinge unread (probe R^2 0.10, latent shift 2.60)"
        assert gap.where_the_gap_is({column: {"success_rate": rate} for column, rate in rates.items()}, probe,
                                    {**shifts, "hinge": 0.1}) == limit  # barely moved: the encoding lacks it


@pytest.mark.parametrize("study", ["suite", "history", "costs", "acting", "training_length", "gap", "zoo", "ablation",
                                   "levers", "robustness", "peers_study"])
def test_every_study_refuses_a_stage_it_does_not_have_before_it_runs_anything(study, tmp_path):
    import importlib

    arguments = [f"out={tmp_path}", "stages=[colect]"]
    with pytest.raises(ConfigError, match=r"unknown stage\(s\) \['colect'\]"):
        if study in ("ablation", "levers"):  # the suite's stages under the study's config
            suite.main(arguments, config=study)
        else:
            importlib.import_module(study).main(arguments)
    assert not any(tmp_path.iterdir())


def test_a_study_run_as_a_script_refuses_bad_input_in_one_line_with_exit_code_2(tmp_path):
    """``only=`` naming a model the study does not have: one line naming the choices, exit 2, nothing written."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "benchmarks/levers.py", f"out={tmp_path / 'study'}", "only=[large-predictr]"],
                            cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    from jepa_wm.config import compose

    choices = ", ".join(compose("levers").models)
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: only=['large-predictr']: not models of this study (choices: {choices})")
    assert not (tmp_path / "study").exists()


def test_the_gap_study_refuses_a_row_it_does_not_have_before_it_runs_anything(tmp_path):
    import gap

    with pytest.raises(ConfigError, match=r"only_rows=\['oracel'\]: not rows of this study \(choices: ours, "):
        gap.main([f"out={tmp_path}", "only_rows=[ours,oracel]"])
    assert not any(tmp_path.iterdir())


def test_the_studies_run_as_scripts_without_extending_the_import_path():
    """``python benchmarks/NAME.py``: the script's own folder is on the path; no study edits sys.path."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    for path in sorted((root / "benchmarks").glob("*.py")):
        text = path.read_text()
        assert "sys.path.insert" not in text, path.name
    result = subprocess.run([sys.executable, "benchmarks/costs.py", "stages=[report]", "tasks=[point_mass-easy]",
                             "out=/nonexistent-jepa-wm-study"], cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_robustness_table_reads_each_cell_and_takes_physical_baselines_from_the_changed_simulator(tmp_path,
                                                                                                      monkeypatch):
    import robustness

    from jepa_wm.config import compose

    monkeypatch.setattr(robustness, "FIGURE", tmp_path / "robustness.png")
    cfg = compose("robustness", [f"out={tmp_path}", "tasks=[reacher-easy]", "factors=[camera,mass]", "episodes=4"])
    cell = robustness.cell
    write_report(cell(tmp_path, "reacher-easy", "", 0, "ours"), [row("ours", 1.0, episodes=4)])
    write_report(cell(tmp_path, "reacher-easy", "", 0, "baselines"), [row("random", 0.0, 4), row("oracle", 1.0, 4)])
    for factor, rates in {"camera": (0.75, 0.25), "mass": (1.0, 0.5)}.items():
        for strength, rate in zip(cfg.strengths, rates):
            write_report(cell(tmp_path, "reacher-easy", factor, strength, "ours"), [row("ours", rate, episodes=4)])
    write_report(cell(tmp_path, "reacher-easy", "mass", 1.0, "baselines"), [row("random", 0.25, 4), row("oracle", 0.75, 4)])
    text = robustness.report(cfg, tmp_path)
    lines = {line.split(" | ")[1]: line for line in text.splitlines() if line.startswith("| reacher-easy")}
    assert lines["camera"].endswith("| 100% [51%, 100%] | 75% [30%, 95%] | 25% [5%, 70%] | 0% | 100% |")
    assert lines["mass"].endswith("| 50% [15%, 85%] | 25% | 75% |")  # the oracle under the changed masses
    assert (tmp_path / "robustness.png").is_file() and "Remedy" not in text
    home = robustness.remedy_directory(tmp_path)
    assert list(cfg.remedy.collections)[:2] == ["varied-1.0", "varied-0.5"]
    for scene, (shipped, strong, mild) in {"nominal": (1.0, 1.0, 1.0), "camera": (0.25, 0.75, 0.5)}.items():
        for model, rate in (("shipped", shipped), ("varied-1.0", strong), ("varied-0.5", mild)):
            write_report(home / model / "results" / scene, [row("ours", rate, episodes=4)])
    text = robustness.report(cfg, tmp_path)
    assert "| scene | shipped model | varied-1.0 | varied-0.5 | augmented |" in text
    assert "| camera | 25% [5%, 70%] | 75% [30%, 95%] | 50% [15%, 85%] | - |" in text and "| floor_colour |" not in text
    assert "augmented: nominal data, model.augment.colour=0.3" in text
    assert robustness.remedy_scenes(cfg.remedy)["camera"] == ["env.variation.camera=1.0"]
    with pytest.raises(ConfigError, match=r"remedy: \['colour'\] are not variation factors"):
        robustness.main([f"out={tmp_path / 'refused'}", "stages=[remedy]", "remedy.scenes=[colour]"])
    with pytest.raises(ConfigError, match=r"remedy.models.augmented.data=varied-2.0: choose nominal or one of "):
        robustness.main([f"out={tmp_path / 'refused'}", "stages=[remedy]", "remedy.models.augmented.data=varied-2.0"])
    assert not (tmp_path / "refused").exists()


def test_the_peers_table_sets_each_peer_beside_ours_random_and_the_oracle_of_the_same_episodes(tmp_path):
    import peers_study

    from jepa_wm.config import compose

    cfg = compose("peers_study", [f"out={tmp_path}", "tasks=[reacher-easy,point_mass-easy]", "seeds=[0,1]"])
    results = suite.results_directory(tmp_path, "test", "reacher-easy", suite.DEFAULT_VARIANT)
    write_report(results / "baselines", [row("random", 0.0), row("oracle", 1.0)])
    for seed, rate in enumerate([0.9, 0.8, 1.0]):
        write_report(results / "default" / f"seed-{seed}", [row("ours", rate)])
    for seed, rate in enumerate([0.5, 0.3]):
        write_report(results / "lewm" / f"seed-{seed}", [row("ours", rate)])
    timings = _study.Timings(tmp_path / "timings.json")
    timings.seconds = {"peers train reacher-easy lewm seed 0": 600, "peers train reacher-easy lewm seed 1": 480,
                       **{f"train reacher-easy default seed {seed}": 360 for seed in range(3)}}
    text = peers_study.report(cfg, tmp_path, timings)
    lines = [line for line in text.splitlines() if line.startswith("| reacher-easy")]
    assert lines == ["| reacher-easy | ours (jepa-wm) | 3 | 90% +- 10% | [84%, 94%] | 0% | 100% | 6.0 | 30 |",
                     "| reacher-easy | LeWM | 2 | 40% +- 14% | [31%, 50%] | 0% | 100% | 9.0 | 30 |"]
    assert "point_mass-easy" not in text  # no peer finished there: no rows
    import gap

    shipped = gap.results_directory(tmp_path, "test", "point_mass-easy", "pretrained", "")  # the suite's runs are not there
    write_report(shipped / "ours", [row("ours", 0.76)])
    write_report(shipped / "baselines", [row("random", 0.02), row("oracle", 0.84)])
    write_report(suite.results_directory(tmp_path, "test", "point_mass-easy", suite.DEFAULT_VARIANT) / "lewm" / "seed-0",
                 [row("ours", 0.2)])
    text = peers_study.report(cfg, tmp_path, timings)
    assert "| point_mass-easy | ours (jepa-wm) | 1 | 76% +- 0% | [63%, 86%] | 2% | 84% | - | 30 |" in text
    assert "| point_mass-easy | LeWM | 1 | 20% +- 0% |" in text
    assert "point_mass-easy: the shipped model (seed 0), planned by benchmarks/gap.py" in text
    assert "GCBC" not in text  # no policy evaluated yet
    write_report(suite.results_directory(tmp_path, "test", "point_mass-easy", suite.DEFAULT_VARIANT) / "gcbc" / "seed-0",
                 [row("ours", 0.28)])
    timings.seconds["peers policy gcbc point_mass-easy"] = 90
    text = peers_study.report(cfg, tmp_path, timings)
    assert "| point_mass-easy | GCBC (our policy alone) | 1 | 28% +- 0% | [17%, 42%] | 2% | 84% | 1.5 | 30 |" in text
    assert "LeWM 86%, DINO-WM 79%, PLDM 78%, RC-aux 87.2%" in text
    assert "the Goal-reaching suite table's reacher-offset25 rows" in text  # the suite's runs are not there
    for variant, rates in ((suite.DEFAULT_VARIANT, [1.0, 1.0]), ("published-schedule", [0.9, 1.0])):
        for seed, rate in enumerate(rates):
            results = suite.results_directory(tmp_path, "test", "reacher-offset25", variant) / "default"
            write_report(results / f"seed-{seed}", [row("ours", rate)])
    text = peers_study.report(cfg, tmp_path, timings)
    assert ("100% +- 0% over 2 training seeds with our schedule; 95% +- 7% over 2 training seeds with the "
            "published schedule") in text
    write_report(suite.results_directory(tmp_path, "test", "reacher-offset25", "published-schedule") / "lewm" / "seed-0",
                 [row("ours", 0.1)])
    write_report(suite.results_directory(tmp_path, "test", "reacher-offset25", suite.DEFAULT_VARIANT) / "lewm" / "seed-0",
                 [row("ours", 0.06)])
    shipped = gap.results_directory(tmp_path, "test", "reacher-offset25", "pretrained", "")
    write_report(shipped / "baselines", [row("random", 0.04), row("oracle", 1.0)])
    write_report(shipped / "ours", [row("ours", 1.0)])
    offset_only = compose("peers_study", [f"out={tmp_path}", "tasks=[reacher-offset25]", "seeds=[0,1]"])
    text = peers_study.report(offset_only, tmp_path, timings)
    assert "| reacher-offset25 | LeWM | 1 | 6% +- 0% |" in text
    assert "| reacher-offset25 | LeWM (published-schedule) | 1 | 10% +- 0% |" in text
    assert "rollout ratio" not in text  # nothing read yet: no readings table
    from jepa_wm.files import write_json_atomic

    peers_study.readings_file(tmp_path, "point_mass-easy", "ours").parent.mkdir(parents=True)
    for name, readings in (("ours", (0.99, 0.85, [0.33, 0.13])), ("lewm-seed1", (-0.31, 0.02, [193.4, 155.6]))):
        write_json_atomic(peers_study.readings_file(tmp_path, "point_mass-easy", name),
                          {"episodes": 40, "windows": 480,
                           **dict(zip(("probe_r2", "distance_rank_correlation", "rollout_ratio"), readings))})
    text = peers_study.report(cfg, tmp_path, timings)
    assert "| point_mass-easy | ours (jepa-wm, shipped) | 0.99 | 0.85 | 0.33 / 0.13 |" in text
    assert "| point_mass-easy | LeWM (seed 1) | -0.31 | 0.02 | 193.40 / 155.60 |" in text


def test_every_pitfall_test_the_peers_section_names_exists():
    """The section says which test holds each evaluator pitfall: a renamed or removed test must not leave it wrong."""
    import re

    import peers_study

    from jepa_wm.config import compose

    text = peers_study.published(compose("peers_study"), Path("/nonexistent"))
    named = re.findall(r"(tests/\w+\.py)::(\w+)", text)
    assert len(named) == 4
    root = Path(__file__).resolve().parents[1]
    for path, name in named:
        assert f"def {name}(" in (root / path).read_text(), (path, name)


def test_the_peers_study_says_how_to_build_what_it_runs_in_before_it_writes_anything(tmp_path):
    import peers_study

    with pytest.raises(ConfigError, match=r"peers_python=/nonexistent/python does not exist: build the peers venv "
                                          r"with `bash benchmarks/peers/setup_venv.sh`"):
        peers_study.main([f"out={tmp_path / 'study'}", "stages=[train]", "peers_python=/nonexistent/python"])
    with pytest.raises(ConfigError, match=r"peers=\['dinowm'\]: not peers of this study"):
        peers_study.main([f"out={tmp_path / 'study'}", "stages=[train]", "peers=[dinowm]"])
    with pytest.raises(ConfigError, match=r"policies=\['gcbk'\]: not policies of this study \(choices: gcbc, "):
        peers_study.main([f"out={tmp_path / 'study'}", "stages=[export]", "policies=[gcbk]"])
    assert not (tmp_path / "study").exists()


def test_the_peers_study_reuses_a_run_or_report_only_when_its_settings_are_the_same(tmp_path, monkeypatch):
    import peers_study

    from jepa_wm.config import as_overrides, compose, to_dict

    calls = []
    monkeypatch.setattr(peers_study.subprocess, "run", lambda command, **kwargs: calls.append(command))
    cfg = compose("peers_study", [f"out={tmp_path}"])
    weights = tmp_path / "peers" / "home" / "checkpoints" / "reacher-easy-lewm-seed0" / "weights_epoch_1.pt"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"")
    (weights.parent / "peer_training.json").write_text(json.dumps(list(cfg.peer_training)))
    assert peers_study.train(cfg, tmp_path, "reacher-easy", "lewm", 0) == weights and not calls
    changed = compose("peers_study", [f"out={tmp_path}", "peer_training=[trainer.max_epochs=1,loader.batch_size=32]"])
    assert peers_study.train(changed, tmp_path, "reacher-easy", "lewm", 0) == weights and len(calls) == 1
    assert json.loads((weights.parent / "peer_training.json").read_text()) == list(changed.peer_training)

    results = tmp_path / "results"
    overrides = ["cost.name=l2", "env=reacher-easy", *as_overrides(cfg.plan)]
    config = {**to_dict(compose("plan", overrides)), "checkpoint": str(weights.resolve())}
    results.mkdir()
    (results / "report.json").write_text(json.dumps({"results": [row("ours", 0.5)], "config": config}))
    assert peers_study.plan(cfg, tmp_path, "reacher-easy", "reacher-easy", weights, results, [])["ours"]["success_rate"] == 0.5
    assert len(calls) == 1  # the same settings: reused
    fewer = compose("peers_study", [f"out={tmp_path}", "plan.episodes=7"])
    peers_study.plan(fewer, tmp_path, "reacher-easy", "reacher-easy", weights, results, [])
    assert len(calls) == 2 and "episodes=7" in calls[-1]
    peers_study.plan(cfg, tmp_path, "reacher-easy", "reacher-easy", weights, results, ["planner.iterations=30"])
    assert len(calls) == 3 and calls[-1][-1] == "planner.iterations=30"  # another schedule: planned again

    with pytest.raises(ConfigError, match=r"peer_training must set trainer.max_epochs=N"):
        peers_study.max_epochs(compose("peers_study", ["peer_training=[img_size=64]"]))


def test_the_latent_shift_sees_a_turned_joint_and_not_a_turn_that_leaves_the_frame_as_it_was(tmp_path):
    """finger-spin's spinner looks the same after half a turn: turning it by pi leaves every embedding where it was,
    by 0.5 rad moves it; a position task has no joint to turn."""
    import gap
    from tests.test_evaluation import save_model_checkpoint, tiny_pixel_model

    from jepa_wm.config import load_group, to_dict

    checkpoint = str(save_model_checkpoint(tiny_pixel_model(task="finger-spin"), tmp_path / "finger.ckpt"))
    env_cfg = to_dict(load_group("env", "finger-spin"))
    turned = gap.latent_shift(checkpoint, env_cfg, turn=0.5, poses=3)
    half_turn = gap.latent_shift(checkpoint, env_cfg, turn=math.pi, poses=3)
    assert set(turned) == {"proximal", "distal", "hinge"} and min(turned.values()) > 0
    assert half_turn["hinge"] < 1e-6 < half_turn["proximal"]
    assert gap.latent_shift(checkpoint, to_dict(load_group("env", "reacher-easy")), poses=1) == {}


def test_a_report_run_for_part_of_a_study_still_reports_every_task_and_seed_measured(tmp_path, monkeypatch, capsys):
    """Reporting after a run for one task must not drop the other tasks' rows (nor redraw the figure without them)."""
    monkeypatch.setattr(suite, "FIGURE", tmp_path / "suite.png")
    for task, rate in (("reacher-easy", 0.9), ("finger-spin", 0.5)):
        results = suite.results_directory(tmp_path, "test", task, suite.DEFAULT_VARIANT)
        write_report(results / "baselines", [row("random", 0.0), row("oracle", 1.0)])
        for seed in range(3):
            write_report(results / "default" / f"seed-{seed}", [row("ours", rate)])
    arguments = [f"out={tmp_path}", "tasks=[finger-spin]", "seeds=[1]", "only=[default]"]
    study = _study.Study("suite", arguments, suite.STAGES)
    assert list(study.cfg.tasks) == ["finger-spin"] and list(study.cfg.seeds) == [1]  # what the run works on
    assert "reacher-easy" in study.report_cfg.tasks and list(study.report_cfg.seeds) == [0, 1, 2]
    suite.main([f"out={tmp_path}", "tasks=[finger-spin]", "seeds=[1]", "stages=[report]"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["reacher-easy", "finger-spin"]
    assert all("| 3 | " in line for line in lines[2:])  # every seed on disk, not only the one this run named
    assert set(json.loads((tmp_path / "suite.json").read_text())) == {
        f"{task}/{suite.DEFAULT_VARIANT}/default" for task in ("reacher-easy", "finger-spin")}


def test_planning_speed_acts_in_a_checkpoints_own_task():
    """A hopper-stand checkpoint timed in reacher-easy failed on its 4-d actions once the benchmark acted."""
    import planning_speed

    from jepa_wm.checkpoint import load_world_model
    from jepa_wm.data.envs import make_env
    from jepa_wm.references import resolve_checkpoint

    model = load_world_model(resolve_checkpoint("pretrained:hopper-stand"), device="cpu")
    env_cfg = planning_speed.timing_env(model, from_checkpoint=True)
    env = make_env(env_cfg, obs_type=model.cfg["obs_type"])
    try:
        assert env_cfg["name"] == "hopper-stand" and env.action_dim * model.frameskip == model.action_dim
    finally:
        env.close()
    assert planning_speed.timing_env(model, from_checkpoint=False)["name"] == "reacher-easy"


def test_writing_a_report_again_keeps_the_notes_written_under_it_and_the_other_sections(tmp_path, monkeypatch):
    """A report written with --write replaced its whole section: the notes under its table (what was adopted and
    why, one-off measurements) were lost."""
    import _report

    monkeypatch.setattr(_report, "BENCHMARKS_FILE", tmp_path / "BENCHMARKS.md")
    (tmp_path / "BENCHMARKS.md").write_text(
        "# Benchmarks\n\n## Gap\n\nold table\n\n" + _report.NOTES_MARKER + "\nAdopted: X, chosen on dev.\n\n"
        "### A study under it\n\nkept too\n\n## Other\n\nuntouched\n")
    _report.update_benchmarks_section("Gap", "new table", "python benchmarks/gap.py --write", "a machine")
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "old table" not in text and "new table" in text
    assert text.index("new table") < text.index(_report.NOTES_MARKER) < text.index("Adopted: X, chosen on dev.")
    assert "### A study under it\n\nkept too\n" in text and "## Other\n\nuntouched\n" in text
    _report.update_benchmarks_section("Other", "rewritten", "python benchmarks/other.py --write", "a machine")
    assert "untouched" not in (tmp_path / "BENCHMARKS.md").read_text()  # no notes marker: the whole section


def test_a_report_redraws_the_committed_figures_only_when_it_writes_benchmarks_md(tmp_path, monkeypatch, capsys):
    """A report run without --write on a machine holding part of a study's results redrew benchmarks/figures/ from
    that part: the committed figure no longer matched the committed tables."""
    import _report

    committed = tmp_path / "committed"
    monkeypatch.setattr(_report, "FIGURES_DIR", committed)
    monkeypatch.setattr(_report, "BENCHMARKS_FILE", tmp_path / "BENCHMARKS.md")
    monkeypatch.setattr(suite, "FIGURE", committed / "suite.png")
    results = suite.results_directory(tmp_path, "test", "reacher-easy", suite.DEFAULT_VARIANT)
    write_report(results / "baselines", [row("random", 0.0), row("oracle", 1.0)])
    write_report(results / "default" / "seed-0", [row("ours", 0.9)])
    suite.main([f"out={tmp_path}", "tasks=[reacher-easy]", "seeds=[0]", "stages=[report]"])
    assert not committed.exists() and (tmp_path / "figures" / "suite.png").is_file()
    assert not (tmp_path / "BENCHMARKS.md").exists()
    suite.main([f"out={tmp_path}", "tasks=[reacher-easy]", "seeds=[0]", "stages=[report]", "--write"])
    assert (committed / "suite.png").is_file() and "reacher-easy" in (tmp_path / "BENCHMARKS.md").read_text()


def test_the_coverage_study_says_how_much_of_each_success_coordinate_each_collection_policy_moves(tmp_path, capsys):
    import coverage
    import numpy as np

    from jepa_wm.data.dataset import load_episodes

    coverage.main([f"out={tmp_path}", "episodes=3", "steps_per_episode=8", "workers=1", "stages=[collect,report]"])
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert table[0] == "| policy | proximal | distal | hinge |"  # finger-spin's success coordinates
    assert [line.split(" (")[0] for line in table[2:]] == [f"| {name}" for name in
                                                           ("ou", "ou-strong", "ou-fast-strong", "ou-slow", "random")]
    # Against the positions the datasets hold: the spinner's share of still episodes and its median range.
    for policy in ("ou", "random"):
        store = load_episodes(tmp_path / "finger-spin" / policy, "pixels")
        hinge = [np.asarray(store.episode(index)["position"])[:, 2] for index in range(store.num_episodes)]
        found = coverage.coverage(tmp_path / "finger-spin" / policy, still=1e-3, moving=0.02)["hinge"]
        assert found["still"] == pytest.approx(np.mean([np.ptp(angle) < 1e-3 for angle in hinge]))
        assert found["range"] == pytest.approx(np.median([np.ptp(angle) for angle in hinge]), rel=1e-5)
    ou, uniform = (coverage.coverage(tmp_path / "finger-spin" / name, 1e-3, 0.02)["proximal"]
                   for name in ("ou", "random"))
    assert ou != uniform and 0 < ou["moving"] <= 1


def test_random_and_the_oracle_act_at_the_control_rate_of_the_tasks_own_models(tmp_path):
    """A task whose train_overrides set model.frameskip trains its models at that rate; its baselines planned at
    the suite's default rate instead (5 env steps per decision beside a model deciding every 3)."""
    from jepa_wm.config import load_group, to_dict
    from jepa_wm.data.collect import collect

    env_cfg = to_dict(load_group("env", "reacher-easy"))
    policy = {"name": "ou", "theta": 0.15, "sigma": 0.3}
    plain = collect(env_cfg, tmp_path / "plain", 1, 3, policy, progress=False)
    own = collect({**env_cfg, "train_overrides": ["model.frameskip=3"]}, tmp_path / "own", 1, 3, policy, progress=False)
    assert suite.task_frameskip(plain, []) == 5 and suite.task_frameskip(own, []) == 3
    assert suite.task_frameskip(own, ["model.frameskip=4"]) == 4  # the study's own setting wins, as in training


def test_each_model_is_compared_with_random_and_the_oracle_deciding_as_often_as_it(tmp_path):
    """A study's model acting at another rate than the task's own models (levers' frameskip-3) is planned beside
    baselines of its own rate, and its row reads those, not the ones beside the task's own models."""
    def write(directory: Path, rows: list[dict], config: dict) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "report.json").write_text(json.dumps({"results": rows, "config": config}))

    assert suite.baselines_directory(tmp_path, 5, 5) == tmp_path / "baselines"
    assert suite.baselines_directory(tmp_path, 3, 5) == tmp_path / "baselines-frameskip-3"
    write(tmp_path / "baselines", [row("random", 0.1), row("oracle", 1.0)], {"mpc": {"frameskip": 5}})
    write(tmp_path / "default" / "seed-0", [row("ours", 0.5)], {"checkpoint": "pretrained:point_mass-easy"})  # 5
    write(tmp_path / "frameskip-3" / "seed-0", [row("ours", 0.6)], {"checkpoint": "pretrained:hopper-stand"})  # 3
    assert suite.summarize_task(tmp_path, "frameskip-3", [0]) is None  # nothing planned at its rate yet
    write(tmp_path / "baselines-frameskip-3", [row("random", 0.2), row("oracle", 0.9)], {"mpc": {"frameskip": 3}})
    default, other_rate = (suite.summarize_task(tmp_path, model, [0]) for model in ("default", "frameskip-3"))
    assert (default["random"], default["oracle"]) == (0.1, 1.0)
    assert (other_rate["random"], other_rate["oracle"]) == (0.2, 0.9)


def test_a_study_plans_again_when_the_tasks_env_settings_changed_and_baselines_ignore_its_planning_cost(tmp_path,
                                                                                                        monkeypatch):
    from jepa_wm.config import compose, to_dict

    planned = []
    monkeypatch.setattr(_study, "run_plan", lambda cfg: planned.append(cfg) or {"rows": [row("ours", 0.5)]})

    def saved(overrides, **env_changes):
        cfg = to_dict(compose("plan", [*overrides, f"out={tmp_path}"]))
        cfg["env"] = {**cfg["env"], **env_changes}  # as the report recorded the settings it planned in
        tmp_path.joinpath("report.json").write_text(json.dumps({"results": [row("ours", 0.9)], "config": cfg}))

    ours = ["checkpoint=model.ckpt", "env=reacher-easy"]
    saved(ours)
    assert _study.evaluate(tmp_path, ours)[0]["success_rate"] == 0.9 and not planned  # the same: reused
    saved(ours, success_threshold=0.5)  # the task's success criterion changed since
    assert _study.evaluate(tmp_path, ours)[0]["success_rate"] == 0.5 and len(planned) == 1
    saved(ours, planning_cost=None)  # ours planned with another cost than the task now asks for
    _study.evaluate(tmp_path, ours)
    assert len(planned) == 2
    baselines = ["env=reacher-easy", "baselines=true", "methods=[random,oracle]"]
    saved(baselines, planning_cost=None)  # random and the oracle plan alike with any planning cost
    _study.evaluate(tmp_path, baselines)
    assert len(planned) == 2
    saved([*baselines, "ensemble=[]"])
    report = json.loads(tmp_path.joinpath("report.json").read_text())
    del report["config"]["ensemble"], report["config"]["cost"]["disagreement"]  # a report from before those keys
    tmp_path.joinpath("report.json").write_text(json.dumps(report))
    _study.evaluate(tmp_path, ours[1:] + baselines[1:])
    assert len(planned) == 2


def test_held_out_prediction_reads_each_success_coordinate_on_training_and_held_out_episodes(tmp_path,
                                                                                             reacher_pixel_dataset,
                                                                                             capsys):
    import torch

    import held_out_prediction
    from tests.test_training import train

    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2000, 6, generator=generator)
    targets = features[:, :2] @ torch.tensor([[1.0, -2.0], [0.5, 1.0]])  # a map the probe can learn
    probe = held_out_prediction.fit_probe(features, targets, steps=400)
    with torch.no_grad():
        residual = (probe(features) - targets).pow(2).mean() / targets.var(0).mean()
    assert residual < 0.05

    run = train(reacher_pixel_dataset, tmp_path / "run", "learned_cost=none", steps=2, every=2)
    held_out_prediction.main([f"checkpoint={run / 'checkpoints' / 'last.ckpt'}", f"train={reacher_pixel_dataset}",
                              f"held_out={reacher_pixel_dataset}", "windows=64"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| training") or
            line.startswith("| held out")]
    assert {tuple(row.split(" | ")[:3]) for row in rows} >= {("| training", "1", "finger x"), ("| held out", "5", "finger y")}
    with pytest.raises(ConfigError, match="held_out= is required"):
        held_out_prediction.main([f"checkpoint={run / 'checkpoints' / 'last.ckpt'}", f"train={reacher_pixel_dataset}"])
