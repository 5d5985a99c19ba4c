"""OmegaConf configs composed from ``configs/`` with ``key=value`` overrides.

A script config (``configs/train.yaml``) names one file per *group* (``env: reacher-easy`` loads
``configs/env/reacher-easy.yaml``). On the command line, ``model=state`` picks another file of a group
and ``model.encoder.embed_dim=128`` sets one value; ``+trainer.accumulate_grad_batches=4`` adds a
key the file does not list. Leading dashes are accepted (``--lr=1e-3``), since
W&B sweep agents pass arguments either way. Unknown keys are errors that name the nearest valid key.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Iterable

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from jepa_wm.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
GROUPS = ("env", "model", "planner")


def group_choices(group: str, config_dir: Path = CONFIG_DIR) -> list[str]:
    return sorted(path.stem for path in (config_dir / group).glob("*.yaml"))


def _nearest(name: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


def load_group(group: str, choice: str, config_dir: Path = CONFIG_DIR) -> DictConfig:
    """Load ``configs/<group>/<choice>.yaml`` (merged onto its ``base:`` file, if it names one)."""
    path = config_dir / group / f"{choice}.yaml"
    if not path.is_file():
        choices = group_choices(group, config_dir)
        raise ConfigError(f"unknown {group} '{choice}'{_nearest(choice, choices)} (choices: {', '.join(choices)})")
    cfg = OmegaConf.load(path)
    # A file may start from another of its group and hold only its differences.
    base = cfg.pop("base", None)
    return OmegaConf.merge(load_group(group, base, config_dir), cfg) if base else cfg


def leaf_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    """Every dotted key path of ``cfg``, e.g. ``model.encoder.embed_dim``."""
    keys = []
    for key, value in cfg.items_ex(resolve=False) if hasattr(cfg, "items_ex") else cfg.items():
        path = f"{prefix}{key}"
        keys.append(path)
        if isinstance(value, DictConfig):
            keys.extend(leaf_keys(value, f"{path}."))
    return keys


def parse_overrides(arguments: Iterable[str]) -> list[tuple[str, str]]:
    """``["a.b=1", "--c=x"]`` -> ``[("a.b", "1"), ("c", "x")]``."""
    pairs = []
    for argument in arguments:
        argument = argument[2:] if argument.startswith("--") else argument
        if "=" not in argument:
            raise ConfigError(f"override '{argument}' is not of the form key=value (e.g. trainer.max_steps=1000)")
        key, value = argument.split("=", 1)
        pairs.append((key.strip(), value))
    return pairs


def compose(script: str, overrides: Iterable[str] = (), config_dir: Path = CONFIG_DIR) -> DictConfig:
    """Build the config of ``script`` (``configs/<script>.yaml``) with its groups and overrides applied.

    The result is in struct mode: reading or writing a key that does not exist raises.
    """
    base_path = config_dir / f"{script}.yaml"
    if not base_path.is_file():
        raise ConfigError(f"no config {base_path}")
    cfg = OmegaConf.load(base_path)
    pairs = parse_overrides(overrides)
    group_picks = {key: value for key, value in pairs if key in GROUPS and key in cfg}
    for group in GROUPS:
        if group in cfg and isinstance(cfg[group], str):
            cfg[group] = load_group(group, group_picks.get(group, cfg[group]), config_dir)
    OmegaConf.set_struct(cfg, True)
    valid = leaf_keys(cfg)
    for key, value in pairs:
        if key in group_picks:
            continue
        parsed = OmegaConf.from_dotlist([f"_={value}"])["_"]
        if key.startswith("+"):
            with open_dict(cfg):
                OmegaConf.update(cfg, key[1:], parsed, merge=False)
            continue
        try:
            OmegaConf.update(cfg, key, parsed, merge=False)
        except (ConfigKeyError, ConfigAttributeError):
            raise ConfigError(f"unknown config key '{key}'{_nearest(key, valid)} (see configs/{script}.yaml)") from None
    return cfg


def to_dict(cfg: DictConfig) -> dict:
    """Plain, resolved dict: what checkpoints and JSON reports store (no OmegaConf objects to unpickle)."""
    return OmegaConf.to_container(cfg, resolve=True)
