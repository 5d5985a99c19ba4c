"""W&B sweeps without a W&B server: ``jepa-wm sweep config=configs/sweeps/planner.yaml``.

``wandb sweep`` needs an account and the network even with ``WANDB_MODE=offline``. This runs the same sweep file
here: W&B's own search engine (the ``sweeps`` package, what ``wandb``'s local controller runs) proposes each
run's parameters from the runs so far (grid, random or bayes), the file's ``command`` runs them as an agent
would, and the metric is read from what the command wrote (``report.json`` of ``jepa-wm plan``; for ``jepa-wm
train`` the last value in ``csv/metrics.csv``, as W&B's run summary holds the last value logged). Each run gets
its own ``out=`` folder; ``sweep.json`` lists the finished ones, so a killed sweep continues where it stopped.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

from jepa_wm.errors import ConfigError
from jepa_wm.files import DirectoryLock, check_output_directory, write_json_atomic

RESULTS = "sweep.json"


def _engine():
    try:
        import sweeps
        from wandb.sdk.launch.sweeps.utils import create_sweep_command_args, load_sweep_config
    except ImportError as error:
        raise ConfigError(f"local sweeps need W&B's search engine: pip install 'jepa-wm[sweep]' ({error})") from None
    return sweeps, create_sweep_command_args, load_sweep_config


def load_sweep_file(path) -> dict:
    """A W&B sweep file, checked against W&B's schema (one line naming the first violation)."""
    sweeps, _, load_sweep_config = _engine()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config={path} is not a sweep file (see configs/sweeps/)")
    try:
        config = load_sweep_config(str(path))
    except Exception as error:  # noqa: BLE001 - whatever the YAML reader says of a damaged file
        raise ConfigError(f"{path} cannot be read as a sweep file ({type(error).__name__}: {error})") from None
    violations = sweeps.schema_violations_from_proposed_config(config or {}) if config else ["it is empty"]
    if violations:
        raise ConfigError(f"{path} is not a valid W&B sweep: {violations[0]}")
    if "command" not in config or "${program}" not in config["command"]:
        raise ConfigError(f"{path} has no command with ${{program}}: a local sweep runs the file's command")
    return config


def agent_command(config: dict, parameters: dict, extra=()) -> list[str]:
    """The command line a W&B agent builds from the file's ``command`` (its macros filled in), then ``extra``."""
    _, create_sweep_command_args, _ = _engine()
    program = shutil.which(config["program"]) or config["program"]
    arguments = create_sweep_command_args({"args": {key: {"value": value} for key, value in parameters.items()}})
    macros = {"${env}": [], "${interpreter}": [sys.executable], "${program}": [program],
              "${args}": arguments["args"], "${args_no_hyphens}": arguments["args_no_hyphens"],
              "${args_no_boolean_flags}": arguments["args_no_boolean_flags"]}
    command = []
    for part in config["command"]:
        command += macros.get(part, [part])
    return [*command, *extra]


def read_metric(run: Path, name: str) -> float | None:
    """The sweep's metric as the run wrote it: ours in a planning report, else the last value in metrics.csv."""
    report = run / "report.json"
    if report.is_file():
        rows = json.loads(report.read_text()).get("results", [])
        ours = next((row for row in rows if row.get("method") == "ours"), None)
        return None if ours is None or ours.get(name) is None else float(ours[name])
    history = run / "csv" / "metrics.csv"
    if history.is_file():
        with open(history, newline="") as file:
            values = [row[name] for row in csv.DictReader(file) if row.get(name) not in (None, "")]
        return float(values[-1]) if values else None
    return None


def run_sweep(path, out, runs: int, extra=(), progress: bool = True) -> list[dict]:
    """Run up to ``runs`` runs of the sweep file ``path`` in ``out`` (continuing the runs already there);
    returns every finished run as ``{"name", "parameters", "metric", "exit_code"}``."""
    sweeps, _, _ = _engine()
    config = load_sweep_file(path)
    metric = config.get("metric", {}).get("name")
    if metric is None:
        raise ConfigError(f"{path} names no metric to optimise (metric: name: ...)")
    out = check_output_directory(out)
    out.mkdir(parents=True, exist_ok=True)
    with DirectoryLock(out, "a sweep"):
        finished = _finished_runs(out / RESULTS, path)
        while len(finished) < runs:
            previous = [sweeps.SweepRun(name=run["name"], state=sweeps.RunState.finished,
                                        config={key: {"value": value} for key, value in run["parameters"].items()},
                                        summary_metrics={} if run["metric"] is None else {metric: run["metric"]})
                        for run in finished]
            proposal = sweeps.next_run(config, previous, validate=True)
            if proposal is None:  # a grid with every point run
                break
            name = f"run-{len(finished):03d}"
            parameters = {key: entry["value"] for key, entry in proposal.config.items()}
            if progress:
                print(f"[{len(finished) + 1}/{runs}] {name}: " + " ".join(f"{k}={v}" for k, v in parameters.items()),
                      flush=True)
            command = agent_command(config, parameters, [*extra, f"out={out / name}"])
            completed = subprocess.run(command, stdout=None if progress else subprocess.DEVNULL)
            finished.append({"name": name, "parameters": parameters, "exit_code": completed.returncode,
                             "metric": read_metric(out / name, metric) if completed.returncode == 0 else None})
            write_json_atomic(out / RESULTS, {"sweep": str(Path(path)), "metric": metric, "runs": finished})
    return finished


def _finished_runs(results: Path, path) -> list[dict]:
    if not results.is_file():
        return []
    recorded = json.loads(results.read_text())
    if Path(recorded.get("sweep", "")).name != Path(path).name:
        raise ConfigError(f"{results.parent} holds a sweep of {recorded.get('sweep')}; choose another out=")
    return list(recorded.get("runs", []))


def summary(runs: list[dict], metric: str, goal: str) -> str:
    """The runs as a table, best first."""
    scored = sorted((run for run in runs if run["metric"] is not None), key=lambda run: run["metric"],
                    reverse=goal == "maximize")
    failed = [run for run in runs if run["metric"] is None]
    lines = [f"{metric:>12}  run      parameters"]
    lines += [f"{run['metric']:>12.4f}  {run['name']}  " + " ".join(f"{k}={v}" for k, v in run["parameters"].items())
              for run in scored]
    lines += [f"{'failed':>12}  {run['name']}  exit code {run['exit_code']}" for run in failed]
    return "\n".join(lines)
