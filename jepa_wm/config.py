"""OmegaConf configs composed from ``configs/`` with ``key=value`` overrides.

A script config (``configs/train.yaml``) names one file per *group* (``env: reacher-easy`` loads
``configs/env/reacher-easy.yaml``). On the command line, ``model=state`` picks another file of a group
and ``model.encoder.embed_dim=128`` sets one value; ``+trainer.accumulate_grad_batches=4`` adds a
key the file does not list. A study's ``collect:``, ``train:`` and ``plan:`` sections (configs/suite.yaml) hold
settings of those commands' configs: ``collect.policy.theta=0.3`` is checked against configs/collect.yaml.
Leading dashes are accepted (``--lr=1e-3``), since
W&B sweep agents pass arguments either way. Unknown keys are errors that name the nearest valid key.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterable

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from jepa_wm.errors import ConfigError, did_you_mean, first_line


def _config_dir() -> Path:
    """Where ``jepa_wm.configs`` lives for this copy of jepa_wm: inside the installed package, or the
    repository's configs/ beside it (a source checkout, an editable install)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "configs", here.parent / "configs"):
        if (candidate / "plan.yaml").is_file():
            return candidate
    raise ImportError(f"jepa_wm's configs are missing beside {here}; reinstall jepa-wm")


CONFIG_DIR = _config_dir()
GROUPS = ("env", "model", "planner", "learned_cost", "policy")
# A study's sections that hold settings of a command's config (configs/suite.yaml's `train:` are overrides of
# configs/train.yaml): any key of that command's file is a key of the section, checked against it.
COMMAND_SECTIONS = ("collect", "train", "plan")


def group_choices(group: str, config_dir: Path = CONFIG_DIR) -> list[str]:
    return sorted(path.stem for path in (config_dir / group).glob("*.yaml"))


def load_with_base(directory: Path, name: str, choices: list[str], what: str) -> DictConfig:
    """``directory/<name>.yaml``, merged onto the file of the same directory its ``base:`` names, if any: a
    file may start from another and hold only its differences. The one home of ``base:`` inheritance."""
    if name not in choices:  # also refuses paths: env=../plan is no env
        raise ConfigError(f"unknown {what} '{name}'{did_you_mean(name, choices)} (choices: {', '.join(choices)})")
    cfg = OmegaConf.load(directory / f"{name}.yaml")
    base = cfg.pop("base", None)
    return OmegaConf.merge(load_with_base(directory, base, choices, what), cfg) if base else cfg


def load_group(group: str, choice: str, config_dir: Path = CONFIG_DIR) -> DictConfig:
    """Load ``configs/<group>/<choice>.yaml`` (merged onto its ``base:`` file, if it names one)."""
    return load_with_base(config_dir / group, choice, group_choices(group, config_dir), group)


def load_command_config(name: str, config_dir: Path = CONFIG_DIR) -> DictConfig:
    """Load ``configs/<name>.yaml`` (merged onto its ``base:`` file, if it names one)."""
    return load_with_base(config_dir, name, sorted(path.stem for path in config_dir.glob("*.yaml")), "config")


def command_defaults(name: str, config_dir: Path = CONFIG_DIR) -> DictConfig:
    """``configs/<name>.yaml`` with the files its groups name loaded and no override: every key the command
    takes, with its default (a group left null, such as plan.yaml's ``env``, with its first file's keys)."""
    cfg = load_command_config(name, config_dir)
    for group in GROUPS:
        if group in cfg and (cfg[group] is None or isinstance(cfg[group], str)):
            cfg[group] = load_group(group, cfg[group] or group_choices(group, config_dir)[0], config_dir)
    return cfg


def model_config(*overrides: str) -> DictConfig:
    """The ``model`` section of the training config, with ``model.KEY=VALUE`` overrides: the one way to read
    the model defaults without a dataset."""
    return compose("train", ["data.path=none", *overrides]).model


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


def decode_value(text: str) -> Any:
    """A command-line value as ``compose`` reads it (YAML: numbers, lists, quoted strings with their escapes
    decoded), with nothing resolved: ``"${oc.env:X}"`` stays that text."""
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist([f"_={text}"]), resolve=False)["_"]
    except Exception:  # noqa: BLE001 - text YAML cannot read: compose will say so where it came from
        return text


def is_plain_value(value: Any) -> bool:
    """A number, a word, a boolean, null or a list of those, with no interpolation in any string: a value that
    means itself, whatever the environment or the rest of the config holds."""
    if isinstance(value, list):
        return all(not isinstance(item, (list, dict)) and is_plain_value(item) for item in value)
    if isinstance(value, str):
        return "${" not in value and "\n" not in value
    return value is None or isinstance(value, (bool, int, float))


def _at_least(minimum: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda value: value >= minimum), f"an integer >= {minimum}"


def _seed() -> tuple[Callable[[Any], bool], str]:
    # What every generator a run seeds accepts as it is: Lightning replaces a larger seed with a random one, and
    # an environment's seed is taken modulo 2**32 (two seeds would give the same episodes).
    return (lambda value: isinstance(value, int) and 0 <= value < 2**32), "an integer in [0, 2**32)"


def _positive() -> tuple[Callable[[Any], bool], str]:
    return (lambda value: value > 0), "a number > 0"


def _non_negative() -> tuple[Callable[[Any], bool], str]:
    return (lambda value: value >= 0), "a number >= 0"


def _list_of_integers(minimum: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda values: all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in values),
            f"a list of integers >= {minimum}, e.g. [500,1500]")


def _one_of(*choices: str) -> tuple[Callable[[Any], bool], str]:
    return (lambda value: value in choices), f"one of {', '.join(choices)}"


def _fraction(open_low: bool) -> tuple[Callable[[Any], bool], str]:
    if open_low:
        return (lambda value: 0.0 < value < 1.0), "a number in (0, 1)"
    return (lambda value: 0.0 <= value < 1.0), "a number in [0, 1)"


# Allowed values of settings wherever they appear (train, collect, plan, quickstart), beyond their type.
# A key absent from a script's config is ignored; one home for every range check of the command line.
VALUE_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": _seed(),
    "learned_cost.seed": _seed(),
    "policy.seed": _seed(),
    "episodes": _at_least(1),
    "runs": _at_least(1),
    "steps_per_episode": _at_least(1),
    "episodes_per_shard": _at_least(1),
    "workers": _at_least(1),
    "videos": _at_least(0),
    "data.batch_size": _at_least(1),
    "data.num_workers": _at_least(0),
    "data.val_fraction": _fraction(open_low=True),  # validation selects best.ckpt and fits the probe
    "trainer.max_steps": _at_least(1),
    "trainer.val_check_interval": _at_least(1),
    "trainer.log_every_n_steps": _at_least(1),
    "model.history": _at_least(1),
    "model.rollout_steps": _at_least(1),
    "model.frameskip": _at_least(1),
    "model.encoder.embed_dim": _at_least(1),
    "model.predictor.hidden_dim": _at_least(1),
    "model.predictor.depth": _at_least(1),
    "model.decoder.channels": _at_least(1),
    "model.ema_momentum": _fraction(open_low=False),
    "model.optim.lr": _positive(),
    "model.optim.weight_decay": _non_negative(),
    "model.optim.warmup_steps": _at_least(0),
    "model.optim.min_lr_ratio": _non_negative(),
    "trainer.gradient_clip_val": _non_negative(),
    "checkpoints_at": _list_of_integers(1),
    "model.encoder.channels": (lambda values: bool(values) and _list_of_integers(1)[0](values),
                               "a non-empty list of integers >= 1, e.g. [16,32,64,64]"),
    "wandb.mode": _one_of("offline", "online", "disabled"),
    "eval.every_n_steps": _at_least(0),
    "eval.episodes": _at_least(1),
    "mpc.horizon": _at_least(1),
    "mpc.replan_every": _at_least(1),
    "mpc.frameskip": _at_least(1),
    "env.image_size": _at_least(8),
    "env.action_repeat": _at_least(1),
    "env.episode_length": _at_least(1),
}


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a finite number"
    if isinstance(value, (list, ListConfig)):
        return "a list, e.g. [1,2]"
    return type(value).__name__


def _checked_value(key: str, default: Any, value: Any) -> Any:
    """``value`` for ``key`` if it has the type of the file's ``default`` (ints may stand for floats)."""
    if default is None or isinstance(default, str) or value is None and not isinstance(default, (bool, int, float)):
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    elif isinstance(default, (list, ListConfig)):
        ok = isinstance(value, (list, ListConfig))
    else:
        ok = True
    if not ok:
        raise ConfigError(f"{key} must be {_type_name(default)}; got {value!r}")
    return value


def check_values(cfg: DictConfig, script: str) -> None:
    """Apply ``VALUE_RULES`` and require every mandatory (``???``) value."""
    try:  # an interpolation in an override (`out=${oc.env:RUNS}/a`) that does not resolve
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as error:
        where = f" in {error.full_key}" if getattr(error, "full_key", None) else ""
        raise ConfigError(f"cannot resolve{where}: {first_line(error)}; check the ${{...}} in that "
                          f"value, or write a literal $ as \\$") from None
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        given = " ".join(f"{key}=VALUE" for key in missing)
        raise ConfigError(f"missing required setting {', '.join(missing)}: pass {given} (see configs/{script}.yaml)")
    for key, (allowed, description) in VALUE_RULES.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is None:
            continue
        value = list(value) if isinstance(value, ListConfig) else value
        try:
            ok = not isinstance(value, bool) and allowed(value)
        except TypeError:  # e.g. a word where a number belongs
            ok = False
        if not ok:
            raise ConfigError(f"{key} must be {description}; got {value!r}")


def compose(script: str, overrides: Iterable[str] = (), config_dir: Path = CONFIG_DIR) -> DictConfig:
    """Build the config of ``script`` (``configs/<script>.yaml``) with its groups and overrides applied.

    Every override is checked: the key must exist (or start with ``+``), the value must have the type of
    the file's value, and ranges in ``VALUE_RULES`` hold. A group left ``null`` in the file (``plan.yaml``'s
    ``env``: the checkpoint's own task) takes ``group.key=value`` overrides as an overlay of just those keys.
    The result is in struct mode: reading or writing a key that does not exist raises.
    """
    cfg = load_command_config(script, config_dir)
    pairs = parse_overrides(overrides)
    group_picks = {key: value for key, value in pairs if key in GROUPS and key in cfg}
    overlays = {}
    for group in GROUPS:
        if group not in cfg:
            continue
        choice = group_picks.get(group, cfg[group])
        if choice in (None, "null"):
            cfg[group] = None
            if any(key.startswith(f"{group}.") for key, _ in pairs):
                # Keys of any file of the group are the valid keys of an overlay (all files share them).
                overlays[group] = leaf_keys(load_group(group, group_choices(group, config_dir)[0], config_dir))
                cfg[group] = {}
        elif isinstance(choice, str):
            cfg[group] = load_group(group, choice, config_dir)
    OmegaConf.set_struct(cfg, True)
    valid = leaf_keys(cfg)
    for key, value in pairs:
        if key in group_picks:
            continue
        # Unresolved: an interpolation is resolved in the composed config (where `${seed}` means its seed), an
        # escaped one (`\${x}`) stays the literal text.
        parsed = OmegaConf.to_container(OmegaConf.from_dotlist([f"_={value}"]), resolve=False)["_"]
        if isinstance(parsed, dict) and not value.lstrip().startswith("{"):
            parsed = value  # `checkpoint=pretrained:` is a reference, not the YAML mapping {pretrained: null}
        if key.startswith("+"):
            with open_dict(cfg):
                OmegaConf.update(cfg, key[1:], parsed, merge=False)
            continue
        group = key.split(".", 1)[0]
        if group in overlays:
            if key[len(group) + 1:] not in overlays[group]:
                choices = [f"{group}.{name}" for name in overlays[group]]
                raise ConfigError(f"unknown config key '{key}'{did_you_mean(key, choices)} (see configs/{group}/)")
            with open_dict(cfg):
                OmegaConf.update(cfg, key, parsed, merge=False)
            continue
        section, _, rest = key.partition(".")
        if section in COMMAND_SECTIONS and section != script and isinstance(cfg.get(section), DictConfig) \
                and rest not in leaf_keys(cfg[section]):
            _set_command_setting(cfg, section, rest, parsed, config_dir)  # a study's setting of another command
            continue
        try:
            default = OmegaConf.select(cfg, key, throw_on_missing=False)
            OmegaConf.update(cfg, key, _checked_value(key, default, parsed), merge=False)
        except (ConfigKeyError, ConfigAttributeError):
            raise ConfigError(f"unknown config key '{key}'{did_you_mean(key, valid)} (see configs/{script}.yaml)") from None
    check_values(cfg, script)
    return cfg


def _set_command_setting(cfg: DictConfig, section: str, key: str, value: Any, config_dir: Path) -> None:
    """Set ``section.key`` of a study's config, where the section holds settings of ``configs/<section>.yaml``
    and lists only some of them: the key must be one of that file's, the value of its type."""
    command = command_defaults(section, config_dir)
    keys = leaf_keys(command)
    if key not in keys:
        raise ConfigError(f"unknown config key '{section}.{key}'"
                          f"{did_you_mean(f'{section}.{key}', [f'{section}.{name}' for name in keys])} "
                          f"(the {section} section holds settings of configs/{section}.yaml)")
    with open_dict(cfg):
        OmegaConf.update(cfg, f"{section}.{key}", _checked_value(f"{section}.{key}", OmegaConf.select(command, key),
                                                                   value), merge=False)


def command_line(argv: Iterable[str], defaults: dict, flags: Iterable[str] = ("--write",)) -> tuple[dict, set[str]]:
    """``key=value`` options checked against ``defaults`` (a typo names the nearest key; a value takes the type of
    its default) and ``--flag`` switches among ``flags``: the one parser of the benchmarks' command lines.

    Options whose default is ``None`` take any value, parsed as YAML (``checkpoint=...``). Returns (options with
    every default filled in, the flags given).
    """
    arguments = list(argv)
    given_flags = {argument for argument in arguments if "=" not in argument}
    unknown_flags = sorted(given_flags - set(flags))
    if unknown_flags:
        raise ConfigError(f"unknown switch(es) {', '.join(unknown_flags)} (choices: {', '.join(flags) or 'none'}); "
                          f"options are key=value")
    options = dict(defaults)
    for key, value in parse_overrides(argument for argument in arguments if "=" in argument):
        if key not in defaults:
            raise ConfigError(f"unknown option '{key}'{did_you_mean(key, defaults)} (choices: {', '.join(defaults)})")
        parsed = OmegaConf.to_container(OmegaConf.from_dotlist([f"_={value}"]), resolve=True)["_"]
        options[key] = _checked_value(key, defaults[key], value if isinstance(defaults[key], str) else parsed)
    return options, given_flags


def to_dict(cfg: DictConfig) -> dict:
    """Plain, resolved dict: what checkpoints and JSON reports store (no OmegaConf objects to unpickle)."""
    return OmegaConf.to_container(cfg, resolve=True)


def as_overrides(section) -> list[str]:
    """A nested config section as ``key=value`` overrides: ``{trainer: {max_steps: 5}}`` -> ``["trainer.max_steps=5"]``.

    How one config (quickstart, suite) sets the settings of another script's config.
    """
    def flatten(node, prefix: str) -> list[str]:
        if isinstance(node, dict):
            return [item for key, value in node.items() for item in flatten(value, f"{prefix}{key}.")]
        value = "null" if node is None else str(node).lower() if isinstance(node, bool) else node
        if isinstance(value, list):
            value = "[" + ",".join(str(item) for item in value) + "]"
        return [f"{prefix[:-1]}={value}"]

    return flatten(to_dict(section) if isinstance(section, DictConfig) else dict(section or {}), "")
