"""The suite's summary: the numbers BENCHMARKS.md reports are computed from the reports on disk correctly."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import suite  # noqa: E402

from planning.evaluate import wilson_interval  # noqa: E402


def write_report(directory: Path, rows: list[dict]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.json").write_text(json.dumps({"results": rows, "config": {}}))


def row(method: str, rate: float, episodes: int = 50, distance: float = 0.1) -> dict:
    return {"method": method, "success_rate": rate, "episodes": episodes, "final_distance": distance,
            "ms_per_step": 30.0, "ci95": list(wilson_interval(round(rate * episodes), episodes))}


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
