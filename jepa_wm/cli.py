"""The ``jepa-wm`` command: ``jepa-wm SUBCOMMAND key=value ...``, also ``python -m jepa_wm SUBCOMMAND ...``.

Every subcommand reads ``configs/<config>.yaml`` (shipped inside the package) and takes ``key=value``
overrides, checked against it (typos name the nearest key). ``--help`` prints what a subcommand does and
every key with the comment beside it in its YAML, the choices of each group (env, model, planner,
learned_cost) and an example; ``print_config=true`` prints the resolved config and exits.

Exit codes: 0 when the work was done; 2 with one ``error:`` line for anything the user can fix (a bad
setting, dataset or checkpoint, a full disk); 130 after Ctrl-C and 143 after SIGTERM, each saying how to
continue. Subcommands import the heavy libraries inside, so Ctrl-C during the imports is handled too.
"""

from __future__ import annotations

import errno
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# Errors of the file system that come from where and how much the user asked to write, not from a bug.
FILE_SYSTEM_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR, errno.ENOTDIR,
                      errno.ENAMETOOLONG, errno.EFBIG)
PRINT_CONFIG = "print_config"


@dataclass(frozen=True)
class Command:
    config: str            # configs/<config>.yaml
    summary: str           # one line: what it does
    example: str           # a command that works after install
    run: Callable          # run(cfg) -> None; prints its result


def _collect(cfg) -> None:
    from jepa_wm.data.collect import collect_from_config

    print(f"dataset: {collect_from_config(cfg)}")


def _train(cfg) -> None:
    from pytorch_lightning.utilities import rank_zero_only

    from jepa_wm.pipeline import train_from_config

    from jepa_wm.training import checkpoint_summary

    out = train_from_config(cfg)
    if rank_zero_only.rank == 0:  # once per run, also when every process of a DDP run gets here
        print("\n".join([f"run: {out}", *checkpoint_summary(out, cfg.best.metric)]))


def _train_head(key: str):
    """``jepa-wm train-cost`` / ``train-policy``: a head of family ``key`` (jepa_wm.heads) into a checkpoint."""

    def run(cfg) -> None:
        import json

        from jepa_wm.heads import FAMILIES
        from jepa_wm.pipeline import train_head_from_config

        metrics = train_head_from_config(key, cfg)
        family = FAMILIES[key]
        print(f"{family.description} ({cfg[family.group].kind}) stored in {cfg.out or cfg.checkpoint}")
        print(json.dumps({name: round(value, 4) for name, value in metrics.items()}))

    return run


def _plan(cfg) -> None:
    from jepa_wm.planning.experiment import run_plan
    from jepa_wm.references import PRETRAINED_PREFIX, describe_pretrained

    if cfg.checkpoint == PRETRAINED_PREFIX:  # `checkpoint=pretrained:` alone lists the shipped models
        print(describe_pretrained())
        return
    print_result(run_plan(cfg))


def _quickstart(cfg) -> None:
    from jepa_wm.pipeline import run_quickstart

    result = run_quickstart(cfg)
    print()
    print_result(result)


def _sweep(cfg) -> None:
    from jepa_wm.local_sweep import load_sweep_file, run_sweep, summary

    sweep = load_sweep_file(cfg.config)
    out = cfg.out or Path("runs") / "sweeps" / Path(cfg.config).stem
    runs = run_sweep(cfg.config, out, cfg.runs, list(cfg.extra), progress=cfg.progress)
    print(summary(runs, sweep["metric"]["name"], sweep["metric"].get("goal", "maximize")))
    print(f"sweep: {Path(out) / 'sweep.json'}")


FORMATS = ("jepa-wm", "hdf5")


def _convert(cfg) -> None:
    from jepa_wm.data.convert import convert_dataset
    from jepa_wm.errors import ConfigError

    source, target = cfg["from"], cfg["to"]
    for key, value in (("from", source), ("to", target)):
        if value not in FORMATS:
            raise ConfigError(f"{key}={value} is not a format (choices: {', '.join(FORMATS)})")
    if source == target == "jepa-wm":
        print(convert_dataset(cfg.path, cfg.out)["message"])
        return
    from jepa_wm.config import to_dict
    from jepa_wm.data import interop
    from jepa_wm.data.storage import load_manifest

    if cfg.out is None:
        raise ConfigError(f"from={source} to={target} writes a new dataset: pass out=")
    if target == "hdf5" and source == "jepa-wm":
        settings = load_manifest(cfg.path)["env"]
        written = interop.export_hdf5(cfg.path, cfg.out, physics_split=interop.physics_split_of(settings))
    elif source == "hdf5" and target == "jepa-wm":
        written = interop.import_hdf5(cfg.path, cfg.out, env=to_dict(cfg.env) if cfg.env else None,
                                      columns=to_dict(cfg.columns) if cfg.columns else None,
                                      episodes_per_shard=cfg.episodes_per_shard, steps_per_episode=cfg.steps_per_episode)
    else:
        raise ConfigError("from=hdf5 to=hdf5 converts nothing; one side must be jepa-wm")
    print(f"converted {cfg.path} ({source}) to {written} ({target})")


def _joints(cfg) -> None:
    from jepa_wm.data.envs.tasks import domain_joints, domain_task, visual_symmetry
    from jepa_wm.errors import ConfigError

    try:
        task = domain_task(cfg.domain, cfg.task)
        rows = domain_joints(cfg.domain, task)
        looks = visual_symmetry(cfg.domain, task, cfg.camera_id, cfg.image_size)
    except ValueError as error:
        raise ConfigError(str(error)) from error

    def look(qpos: int) -> str:  # what a frame shows of a hinge turned
        order = looks.get(qpos)
        return {None: "-", 0: "out of view", 1: "after a full turn"}.get(order, f"after 1/{order} turn")

    print(f"{cfg.domain}-{task}, camera {cfg.camera_id}, {cfg.image_size} px")
    print(f"{'qpos':>4}  {'joint':<20} {'type':<6} {'range':<18} looks the same")
    for row in rows:
        print(f"{row['qpos']:>4}  {row['name']:<20} {row['type']:<6} {str(row['range']):<18} {look(row['qpos'])}")
    print("success_joints takes qpos indices; hinges are compared modulo 2 pi, slides as they are; a hinge that "
          "looks the same after 1/n turn goes in joint_symmetry ({qpos: n}) so that success asks only what a frame shows")


def _upload(cfg) -> None:
    from jepa_wm.hub import upload_checkpoint

    url = upload_checkpoint(cfg.checkpoint, cfg.repo, private=cfg.private)
    print(f"uploaded: {url}\nload it with: checkpoint=hf:{cfg.repo}")


COMMANDS: dict[str, Command] = {
    "collect": Command("collect", "collect goal-reaching episodes of a DeepMind Control task into a dataset",
                       "jepa-wm collect env=reacher-easy episodes=150 out=datasets/reacher-easy", _collect),
    "train": Command("train", "train a JEPA world model on a dataset (then its learned planning cost)",
                     "jepa-wm train data.path=datasets/reacher-easy out=runs/reacher", _train),
    "train-cost": Command("train_cost", "train a learned planning cost for a trained world model, into its checkpoint",
                          "jepa-wm train-cost checkpoint=runs/reacher/checkpoints/last.ckpt", _train_head("learned_cost")),
    "train-policy": Command("train_policy", "train a goal-conditioned policy (the fast system) into a checkpoint",
                            "jepa-wm train-policy checkpoint=runs/reacher/checkpoints/last.ckpt",
                            _train_head("policy")),
    "plan": Command("plan", "plan toward goals with a world model; success vs random and the oracle",
                    "jepa-wm plan checkpoint=pretrained:reacher-easy episodes=10 baselines=true", _plan),
    "quickstart": Command("quickstart", "collect, train and plan on reacher-easy in one command",
                          "jepa-wm quickstart", _quickstart),
    "sweep": Command("sweep", "run a W&B sweep file here, offline: W&B's search engine, no server or account",
                     "jepa-wm sweep config=configs/sweeps/planner.yaml runs=12", _sweep),
    "convert": Command("convert", "convert datasets: format 1 to 2, and to or from stable-worldmodel's HDF5",
                       "jepa-wm convert path=datasets/old", _convert),
    "joints": Command("joints", "list a DeepMind Control domain's joints and qpos indices (for success_joints)",
                      "jepa-wm joints domain=walker", _joints),
    "upload": Command("upload", "upload a checkpoint and its card to a Hugging Face Hub model repository",
                      "jepa-wm upload checkpoint=runs/reacher/checkpoints/best.ckpt repo=OWNER/NAME", _upload),
}


# ------------------------------------------------------------------------------------------------ help
def documented_keys(path: Path, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, value as written, comment) of every key of a commented YAML file, in file order.

    A comment on the lines below a key (indented as far as the comment beside it) continues that key's.
    """
    entries: list[tuple[str, str, str]] = []
    stack: list[tuple[int, str]] = []
    comment_column = None
    for line in path.read_text().splitlines():
        match = re.match(r"^(\s*)([A-Za-z_][\w-]*):\s*([^#]*?)\s*(?:#\s?(.*))?$", line)
        if match:
            indent, key, value, comment = len(match.group(1)), match.group(2), match.group(3), match.group(4) or ""
            while stack and stack[-1][0] >= indent:
                stack.pop()
            dotted = ".".join([name for _, name in stack] + [key])
            if key != "base":
                entries.append((prefix + dotted, value, comment.strip()))
            comment_column = line.index("#") if "#" in line else None
            if not value:
                stack.append((indent, key))
            continue
        continued = re.match(r"^(\s*)#\s?(.*)$", line)
        if continued and entries and comment_column is not None and len(continued.group(1)) == comment_column:
            key, value, comment = entries[-1]
            entries[-1] = (key, value, f"{comment} {continued.group(2).strip()}".strip())
    return entries


# The file whose keys a group left null (plan's env: the checkpoint's task) shows in --help.
DEFAULT_EXAMPLE = {"env": "reacher-easy"}


def help_text(name: str) -> str:
    """What ``jepa-wm NAME --help`` prints."""
    from jepa_wm.config import CONFIG_DIR, GROUPS, group_choices

    command = COMMANDS[name]
    path = CONFIG_DIR / f"{command.config}.yaml"
    lines = [f"jepa-wm {name}: {command.summary}", "", f"usage: jepa-wm {name} [key=value ...] [print_config=true]",
             f"example: {command.example}", "", f"keys (configs/{command.config}.yaml; '+key=value' adds one it lacks):"]
    keys = documented_keys(path)
    width = 28

    def row(indent: str, shown: str, comment: str) -> None:
        """``key=value`` and its comment in aligned columns; a longer ``key=value`` puts the comment below."""
        column = width - len(indent) + 2
        if len(shown) >= column and comment:
            lines.extend([f"{indent}{shown}", f"{'':<{width + 2}} {comment}"])
        else:
            lines.append(f"{indent}{shown:<{column}} {comment}".rstrip())

    for key, value, comment in keys:
        row("  ", f"{key}={value}" if value else f"{key}:", comment)
        if key in GROUPS and value:  # a group pick (collect's `policy:` is a mapping of its own, not the group)
            choices = group_choices(key)
            shown_file = value if value in choices else DEFAULT_EXAMPLE.get(key, choices[0])
            lines.append(f"  {'':<{width}} choices: {', '.join(choices)}; keys of {key}/{shown_file}.yaml "
                         f"({key}.KEY=VALUE):")
            for sub_key, sub_value, sub_comment in documented_keys(CONFIG_DIR / key / f"{shown_file}.yaml", f"{key}."):
                row("    ", f"{sub_key}={sub_value}" if sub_value else f"{sub_key}:", sub_comment)
    return "\n".join(lines)


def usage() -> str:
    lines = ["usage: jepa-wm COMMAND [key=value ...]   (jepa-wm COMMAND --help: its keys)", "", "commands:"]
    lines += [f"  {name:<12} {command.summary}" for name, command in COMMANDS.items()]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- run
def run(name: str, argv: list[str]) -> int:
    """Run subcommand ``name`` with ``argv``; returns the exit code (errors are printed, not raised)."""
    command = COMMANDS[name]
    if any(argument in ("-h", "--help", "help") for argument in argv):
        try:
            print(help_text(name))
        except BrokenPipeError:  # `jepa-wm plan --help | head`
            sys.stderr.close()
        return 0
    try:
        cfg = compose_command(command, argv)
        if cfg is None:
            return 0
        from jepa_wm.stopping import termination_as_exception

        with termination_as_exception():
            command.run(cfg)
        return 0
    except KeyboardInterrupt as interrupt:
        print(f"interrupted: {str(interrupt) or 'rerun the same command to continue where it stopped'}", file=sys.stderr)
        return 130
    except Exception as error:
        return report_error(error)


def compose_command(command: Command, argv: list[str]):
    """The command's config (train: with the dataset's task settings), or None after printing it."""
    from omegaconf import OmegaConf

    from jepa_wm.config import compose

    show = [argument for argument in argv if argument.lstrip("-").startswith(f"{PRINT_CONFIG}=")]
    argv = [argument for argument in argv if argument not in show]
    if command.config == "train":
        from jepa_wm.pipeline import train_config

        cfg = train_config(argv)
    else:
        cfg = compose(command.config, argv)
    if show and show[-1].split("=", 1)[1].lower() in ("true", "1", "yes"):
        if "checkpoint" in cfg and "env" in cfg and cfg.checkpoint and cfg.checkpoint != "pretrained:":
            from omegaconf import open_dict

            from jepa_wm.checkpoint import load_world_model
            from jepa_wm.planning.experiment import planning_env_settings

            with open_dict(cfg):  # the task it plans: the checkpoint's, with the env.KEY overlays given
                cfg.env = planning_env_settings(cfg.env, load_world_model(cfg.checkpoint))
        print(OmegaConf.to_yaml(cfg, resolve=True), end="")
        return None
    return cfg


def report_error(error: Exception) -> int:
    """One line and exit code 2 for what the user can fix; anything else is a bug and raises."""
    from jepa_wm.data.storage import DatasetError
    from jepa_wm.errors import CheckpointError, ConfigError, NonFiniteLossError, TrainingTerminated, first_line

    if isinstance(error, TrainingTerminated):
        print(f"terminated: {error}", file=sys.stderr)
        return 143  # 128 + SIGTERM, what a shell reports for a process SIGTERM ended
    if isinstance(error, OSError) and error.errno in FILE_SYSTEM_ERRORS:
        # A full disk, a read-only or forbidden place: what the user must fix; every write was atomic
        where = f" {error.filename}" if error.filename else ""
        advice = {errno.ENAMETOOLONG: "choose a shorter out=", errno.ENOSPC: "free space or choose another out=",
                  errno.EDQUOT: "free space or choose another out=", errno.EFBIG: "choose another out="}
        reason = first_line(error.strerror or error)  # HDF5 explains a full disk in many lines
        print(f"error: cannot write{where}: {reason}; "
              f"{advice.get(error.errno, 'choose a place this user may write (another out=)')}, then rerun the same "
              f"command", file=sys.stderr)
        return 2
    if not isinstance(error, (ConfigError, DatasetError, CheckpointError, NonFiniteLossError)):
        raise error
    print(f"error: {error}", file=sys.stderr)
    return 2


def print_result(result: dict) -> None:
    """The success table of a planning result, then the paths of the files it wrote."""
    print(result["table"])
    for kind, path in result["files"].items():
        if path is not None:
            print(f"{kind}: {path}")


def main(argv: list[str] | None = None) -> None:
    """The console entry point: ``jepa-wm COMMAND key=value ...``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        sys.exit(0 if argv else 2)
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        from jepa_wm.errors import did_you_mean

        print(f"error: unknown command '{name}'{did_you_mean(name, COMMANDS)} (commands: {', '.join(COMMANDS)})",
              file=sys.stderr)
        sys.exit(2)
    sys.exit(run(name, rest))


def benchmark(main: Callable[[list[str]], object]) -> None:
    """Run a benchmark's ``main(argv)`` as every command runs: a mistake is one line and exit code 2."""
    try:
        main(sys.argv[1:])
    except KeyboardInterrupt:
        print("interrupted: rerun the same command; finished stages are reused", file=sys.stderr)
        sys.exit(130)
    except Exception as error:
        sys.exit(report_error(error))


def script(name: str) -> None:
    """What ``scripts/<name>.py`` runs: the subcommand with the script's arguments."""
    sys.exit(run(name, sys.argv[1:]))
