"""What every benchmark study shares: its stages (checked, timed, reused when finished) and its result rows.

A study is a config of ``configs/`` with a ``stages`` list and an ``out`` folder. ``Study`` refuses a stage the
study does not have, times every stage in ``timings.json`` (a rerun that reuses a stage keeps its time) and writes
the report into BENCHMARKS.md with ``--write``. Planning stages go through ``evaluate``: a report already on disk
with the same settings is reused, so a study can be killed and rerun, or run in parts. Every report holds the
rows of ``jepa_wm.planning.evaluate.summarize`` (one per method); ``report_rows`` reads them back.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

from _report import drafting_figures, machine_description, update_benchmarks_section

from jepa_wm.config import compose, to_dict
from jepa_wm.errors import ConfigError
from jepa_wm.files import write_json_atomic
from jepa_wm.planning.experiment import planned_with_env_settings, run_plan, with_later_defaults


class Timings:
    """Wall time of each stage, kept in ``timings.json`` (a rerun that reuses a stage keeps its time)."""

    def __init__(self, path: Path):
        self.path = path
        self.seconds = json.loads(path.read_text()) if path.is_file() else {}

    def run(self, name: str, stage, *args, **kwargs):
        start = time.perf_counter()
        result = stage(*args, **kwargs)
        elapsed = time.perf_counter() - start
        if elapsed > 10.0 or name not in self.seconds:  # a reused stage takes ~1 s: keep the real time
            if self.path.is_file():  # parts of the suite may run side by side: start from what they recorded
                self.seconds = json.loads(self.path.read_text())
            self.seconds[name] = round(elapsed, 1)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.path, self.seconds)
        print(f"[{name}] {elapsed:.0f} s", flush=True)
        return result


def only_these(choices, only, option: str, what: str) -> dict:
    """The ``choices`` (name -> settings) a run works on: the names listed in ``only``, or all when it is empty.
    A name that is not a choice stops the run (``option`` is the command-line key that listed it)."""
    unknown = sorted(set(only or []) - set(choices))
    if unknown:
        raise ConfigError(f"{option}={unknown}: not {what} of this study (choices: {', '.join(choices)})")
    return {name: settings for name, settings in choices.items() if not only or name in only}


# Keys with which a run works on a part of a study; its report still describes every part measured (``report_config``).
SUBSET_KEYS = ("tasks", "seeds", "only", "only_rows", "only_costs")


def report_config(name: str, argv: list[str], asked):
    """The config a study's report describes: ``argv``'s settings (``asked``: composed from them), but every task
    and seed of the study (the ones ``argv`` names too) and no ``only*`` subset. A report run for one task then
    keeps the other tasks' rows and figures: each report skips what has no results on disk."""
    whole = compose(name, [arg for arg in argv if arg.split("=", 1)[0].lstrip("+~") not in SUBSET_KEYS])
    for key in ("tasks", "seeds"):
        if key in whole and whole[key] is not None:
            whole[key] = list(dict.fromkeys([*whole[key], *(asked[key] or [])]))
    return whole


class Study:
    """One run of the study ``configs/<name>.yaml`` with the command line ``argv`` (``--write``: put the report
    into BENCHMARKS.md under ``section``). ``stages`` are the ones this study has, in order. ``cfg`` is what this
    run works on; ``report_cfg`` what its report describes (every task and seed: ``report_config``)."""

    def __init__(self, name: str, argv: list[str], stages: tuple[str, ...], timings_file: str = "timings.json"):
        self.name, self.argv, self.write = name, list(argv), "--write" in argv
        arguments = [arg for arg in argv if arg != "--write"]
        self.cfg = compose(name, arguments)
        self.report_cfg = report_config(name, arguments, self.cfg)
        unknown = sorted(set(self.cfg.stages) - set(stages))
        if unknown:
            raise ConfigError(f"unknown stage(s) {unknown}; choose from {', '.join(stages)}")
        self.out = Path(self.cfg.out)
        self.timings = Timings(self.out / timings_file)

    def wants(self, stage: str) -> bool:
        return stage in self.cfg.stages

    def run(self, name: str, stage, *args, **kwargs):
        """Run (or reuse) one stage, timed under ``name``."""
        return self.timings.run(name, stage, *args, **kwargs)

    def report(self, section: str, make_text) -> None:
        """With the ``report`` stage: print ``make_text()`` (None: nothing to report yet) and, with ``--write``,
        put it into BENCHMARKS.md under ``section`` with the command that made it. Its figures go to
        benchmarks/figures/ with ``--write`` only, to ``<out>/figures/`` without."""
        if not self.wants("report"):
            return
        with drafting_figures(None if self.write else self.out / "figures"):
            text = make_text()
        if text is None:
            return
        print(text)
        if self.write:
            command = f"python benchmarks/{self.name}.py " + " ".join(self.argv)
            update_benchmarks_section(section, text, command, machine_description("cpu"))


def comparable(config: dict) -> dict:
    """The settings of a report that decide its numbers (not where it was written or how it printed).

    Reports written before planning costs had names planned with the latent distance: read as ``cost.name=l2``
    with the weights' defaults, which only a sum uses. Reports written before ``act`` acted with the planner;
    ``policy_planner`` only matters when a policy seeds the planner; random and the oracle never read our
    cost or how we act."""
    settings = {key: value for key, value in with_later_defaults(config).items()
                if key not in ("out", "progress", "videos", "device")}
    if "cost" in settings and "name" not in settings["cost"]:
        settings["cost"] = {"name": "l2", "latent_weight": 1.0, "learned_weight": 1.0, **settings["cost"]}
    settings.setdefault("act", "planner")
    if settings["act"] != "policy+planner":
        settings.pop("policy_planner", None)
    settings.setdefault("oracle_planner", "cem")  # before the key, the oracle planned with ours' planner (cem)
    settings.setdefault("oracle_cost", "success")  # before the key, the oracle measured the success coordinates
    if "ours" not in (settings.get("methods") or ["ours"]):  # random and the oracle use neither our cost nor act
        for key in ("cost", "act", "policy_planner", "ensemble"):
            settings.pop(key, None)
    return settings


def evaluate(out: Path, overrides: list[str]) -> list[dict]:
    """run_plan into ``out`` unless a report with the same settings is already there; its result rows."""
    cfg = compose("plan", [*overrides, f"out={out}"])
    report = out / "report.json"
    if report.is_file():
        saved = json.loads(report.read_text())
        if comparable(saved["config"]) == comparable({**to_dict(cfg), "env": saved["config"]["env"]}) and \
                planned_with_env_settings(saved["config"]["env"] or {}, cfg.env, cfg.get("methods")):
            return saved["results"]
    return run_plan(cfg)["rows"]


@functools.lru_cache(maxsize=None)
def checkpoint_frameskip(checkpoint: str) -> int:
    """Env steps per model step of a checkpoint (a path or ``pretrained:NAME``): random and the oracle beside a
    model plan with the same action repeat as the model they are compared with."""
    from jepa_wm.checkpoint import read_checkpoint
    from jepa_wm.references import resolve_checkpoint

    return int(read_checkpoint(resolve_checkpoint(checkpoint))["hyper_parameters"]["cfg"]["frameskip"])


def report_rows(path: Path) -> dict:
    """The rows of ``path/report.json`` by method ({} when it is not there yet)."""
    report = path / "report.json"
    return {row["method"]: row for row in json.loads(report.read_text())["results"]} if report.is_file() else {}
