"""Pretrained world models: shipped with the package, and on the hubs researchers use.

References that ``load_world_model`` and ``plan.py checkpoint=`` accept besides a file path:

- ``pretrained:NAME``: a model shipped in ``jepa_wm/pretrained/`` (one per benchmark task, with a card:
  the task, the command that trained it, its data, steps and test-split success). Works offline right
  after install; ``pretrained:`` alone lists them. ``python benchmarks/zoo.py`` rebuilds them all.
- ``hf:OWNER/NAME[@REVISION]``: ``model.ckpt`` of a Hugging Face Hub model repository, through
  ``huggingface_hub`` (its cache, ``HF_HUB_OFFLINE`` and mirrors via ``HF_ENDPOINT`` apply);
  ``jepa-wm upload`` puts a checkpoint and its card there.
- ``wandb:ENTITY/PROJECT/NAME:ALIAS``: a W&B model artifact (see ``jepa_wm.checkpoint``).

Whatever the source, the file is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
from pathlib import Path

from jepa_wm.errors import CheckpointError, did_you_mean, first_line
from jepa_wm.files import file_sha256

PRETRAINED_PREFIX = "pretrained:"
HUB_PREFIX = "hf:"
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
HUB_FILENAME = "model.ckpt"
REBUILD_ZOO = "python benchmarks/zoo.py"
ARTIFACT_PREFIX = "wandb:"


def is_reference(checkpoint) -> bool:
    """Whether ``checkpoint`` names a model to fetch (shipped, Hub, W&B) rather than a file of the user's."""
    return str(checkpoint).startswith((PRETRAINED_PREFIX, HUB_PREFIX, ARTIFACT_PREFIX))


def reference_name(checkpoint) -> str:
    """A reference's model name, for file names: ``pretrained:reacher-easy`` -> ``reacher-easy``
    (``hf:OWNER/NAME@REVISION`` -> ``NAME``); "" when it names none."""
    return Path(str(checkpoint).split(":")[-1].split("@")[0]).stem


def pretrained_names() -> list[str]:
    """Names of the shipped models (each ``NAME.ckpt`` with its card ``NAME.json``)."""
    return sorted(path.stem for path in PRETRAINED_DIR.glob("*.ckpt") if path.with_suffix(".json").is_file())


# What every card must hold, by path: what listing, resolving and uploading shipped models read.
CARD_FIELDS = {"task": str, "training_steps": int, "weights_sha256": str, "test_success": dict,
               "test_success.rate": (int, float), "test_success.ci95": list, "test_success.episodes": int}


def pretrained_card(name: str) -> dict:
    """The card of a shipped model: task, command, data, steps, test success; a damaged card is named."""
    path = PRETRAINED_DIR / f"{name}.json"
    try:
        card = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} cannot be read ({type(error).__name__}: {error}); reinstall jepa-wm, or "
                              f"rebuild the zoo with {REBUILD_ZOO}") from None
    for field, kind in CARD_FIELDS.items():
        value = card
        for part in field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointError(f"{path} is not a model card: {field} is missing or not a {getattr(kind, '__name__', 'number')}; "
                                  f"reinstall jepa-wm, or rebuild the zoo with {REBUILD_ZOO}")
    low_high = card["test_success"]["ci95"]
    if len(low_high) != 2 or not all(isinstance(bound, (int, float)) for bound in low_high):
        raise CheckpointError(f"{path} is not a model card: test_success.ci95 is not [low, high]; reinstall jepa-wm")
    if not all(card.get(key) is None or isinstance(card[key], (int, float)) for key in ("random_success", "oracle_success")):
        raise CheckpointError(f"{path} is not a model card: random_success/oracle_success is not a number; "
                              f"reinstall jepa-wm")
    if not isinstance(card.get("data") or {}, dict):
        raise CheckpointError(f"{path} is not a model card: data is not a mapping; reinstall jepa-wm")
    return card


def rate(value) -> str:
    return "-" if value is None else f"{value:.0%}"


def trained_on(card: dict) -> str:
    """The task whose data a shipped model was trained on (its own task, if the card does not say)."""
    return (card.get("data") or {}).get("collected_with", card["task"])


def describe_pretrained() -> str:
    """What ``checkpoint=pretrained:`` alone prints: per shipped model its test success beside random and the
    oracle on the same episodes, and which models are one set of weights planning different tasks."""
    names = pretrained_names()
    if not names:
        return "(no pretrained models are shipped in this installation)"
    cards = {name: pretrained_card(name) for name in names}
    lines = [f"{'model':<34} {'ours':>5} {'95% CI':>12} {'random':>7} {'oracle':>7}  test episodes, trained on"]
    for name, card in cards.items():
        success = card["test_success"]
        low, high = success["ci95"]
        lines.append(f"{'pretrained:' + name:<34} {success['rate']:>5.0%} {f'[{low:.0%}, {high:.0%}]':>12} "
                     f"{rate(card.get('random_success')):>7} {rate(card.get('oracle_success')):>7}"
                     f"  {success['episodes']}, {trained_on(card)} data, {card['training_steps']} steps")
    shared = {}
    for name, card in cards.items():
        shared.setdefault(trained_on(card), []).append(name)
    for group, members in shared.items():
        if len(members) > 1:
            lines.append(f"{', '.join(members)}: one world model (trained on {group} data), each planning its own "
                         f"task's goals and success criterion")
    return "\n".join(lines)


def resolve_pretrained(name: str) -> Path:
    """``pretrained:NAME`` -> the shipped file, checked against the sha256 on its card; an unknown or empty
    name lists what exists."""
    names = pretrained_names()
    if not name:
        raise CheckpointError(f"choose a pretrained model:\n{describe_pretrained()}")
    if name not in names:
        raise CheckpointError(f"no pretrained model '{name}'{did_you_mean(name, names)} "
                              f"(shipped: {', '.join(names) or 'none'}; list them with checkpoint=pretrained:)")
    path = PRETRAINED_DIR / f"{name}.ckpt"
    expected = pretrained_card(name).get("weights_sha256")
    if expected is None or file_sha256(path) != expected:
        raise CheckpointError(f"{path} does not match the sha256 on its card ({name}.json): the shipped file was "
                              f"changed or damaged; reinstall jepa-wm, or rebuild the zoo with {REBUILD_ZOO}")
    return path


def resolve_hub(reference: str) -> Path:
    """``hf:OWNER/NAME[@REVISION]`` -> the local path of its ``model.ckpt`` (downloaded or cached)."""
    repo, _, revision = reference.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise CheckpointError(f"'hf:{reference}' is not a Hugging Face model reference; use hf:OWNER/NAME[@REVISION]")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(hf_hub_download(repo, HUB_FILENAME, revision=revision or None))
    except (LocalEntryNotFoundError, RepositoryNotFoundError, HfHubHTTPError, OSError, ValueError) as error:
        reason = first_line(error) or type(error).__name__
        raise CheckpointError(f"cannot get {HUB_FILENAME} of Hugging Face repository '{repo}' "
                              f"({type(error).__name__}: {reason})") from error


def resolve_checkpoint(reference: str | Path) -> Path:
    """A local path, or a reference: ``pretrained:NAME`` (shipped), ``hf:OWNER/NAME[@REVISION]`` (Hugging
    Face Hub) or ``wandb:entity/project/name:alias`` (W&B artifact), fetched first (see this module's docstring)."""
    reference = str(reference)
    if reference.startswith(PRETRAINED_PREFIX):
        return resolve_pretrained(reference[len(PRETRAINED_PREFIX):])
    if reference.startswith(HUB_PREFIX):
        return resolve_hub(reference[len(HUB_PREFIX):])
    if reference.startswith(ARTIFACT_PREFIX):
        return _download_artifact(reference[len(ARTIFACT_PREFIX):])
    path = Path(reference).expanduser()
    if path.is_dir():
        for candidate in ("last.ckpt", "model.ckpt", "checkpoints/last.ckpt"):
            if (path / candidate).is_file():
                return path / candidate
        checkpoints = sorted(path.glob("*.ckpt"))
        if len(checkpoints) == 1:
            return checkpoints[0]
        raise CheckpointError(f"{path} is a directory without a single .ckpt file; pass the checkpoint file itself")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: train one with jepa-wm train, or pass a shipped "
                              f"model (pretrained:NAME; pretrained: lists them), hf:OWNER/NAME or a wandb: artifact")
    return path


def _download_artifact(name: str) -> Path:
    import wandb

    try:
        artifact = wandb.Api().artifact(name, type="model")
        directory = Path(artifact.download())
    except Exception as error:  # network, auth and lookup failures all end here
        raise CheckpointError(f"cannot download W&B artifact '{name}': {error}") from error
    checkpoints = sorted(directory.rglob("*.ckpt"))
    if not checkpoints:
        raise CheckpointError(f"W&B artifact '{name}' holds no .ckpt file (files: {[p.name for p in directory.iterdir()]})")
    return checkpoints[0]
