"""Pretrained world models: shipped with the package, and on the hubs researchers use.

References that ``load_world_model`` and ``plan.py checkpoint=`` accept besides a file path:

- ``pretrained:NAME``: a model shipped in ``jepa_wm/pretrained/`` (one per benchmark task, with a card:
  the task, the command that trained it, its data, steps and test-split success). Works offline right
  after install; ``pretrained:`` alone lists them. ``python benchmarks/zoo.py`` rebuilds them all.
- ``hf:OWNER/NAME[@REVISION]``: ``model.ckpt`` of a Hugging Face Hub model repository, through
  ``huggingface_hub`` (its cache, ``HF_HUB_OFFLINE`` and mirrors via ``HF_ENDPOINT`` apply);
  ``scripts/upload_checkpoint.py`` puts a checkpoint and its card there.
- ``wandb:ENTITY/PROJECT/NAME:ALIAS``: a W&B model artifact (see ``jepa_wm.checkpoint``).

Whatever the source, the file is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from jepa_wm.errors import CheckpointError, ConfigError, did_you_mean

PRETRAINED_PREFIX = "pretrained:"
HUB_PREFIX = "hf:"
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
HUB_FILENAME = "model.ckpt"
REBUILD_ZOO = "python benchmarks/zoo.py"


def pretrained_names() -> list[str]:
    """Names of the shipped models (each ``NAME.ckpt`` with its card ``NAME.json``)."""
    return sorted(path.stem for path in PRETRAINED_DIR.glob("*.ckpt") if path.with_suffix(".json").is_file())


def pretrained_card(name: str) -> dict:
    """The card of a shipped model: task, command, data, steps, test success."""
    return json.loads((PRETRAINED_DIR / f"{name}.json").read_text())


def describe_pretrained() -> str:
    """One line per shipped model, for ``pretrained:`` alone."""
    lines = []
    for name in pretrained_names():
        card = pretrained_card(name)
        low, high = card["test_success"]["ci95"]
        lines.append(f"pretrained:{name}  ({card['task']}; {card['training_steps']} steps; test success "
                     f"{card['test_success']['rate']:.0%} [{low:.0%}, {high:.0%}] on {card['test_success']['episodes']} episodes)")
    return "\n".join(lines) or "(no pretrained models are shipped in this installation)"


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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"cannot get {HUB_FILENAME} of Hugging Face repository '{repo}' "
                              f"({type(error).__name__}: {first_line})") from error


def model_card(checkpoint: dict, card: dict | None) -> str:
    """A Hugging Face model card (README.md) for a checkpoint: what it is, how it was made, how to use it."""
    hparams = checkpoint["hyper_parameters"]
    task = hparams["env"].get("config", {}).get("name", "unknown task")
    lines = ["---", "library_name: jepa-wm", "tags: [world-model, jepa, planning, dm-control]", "---", "",
             f"# jepa-wm world model: {task}", "",
             f"A JEPA world model (encoder: {hparams['cfg']['encoder']['name']}, predictor: "
             f"{hparams['cfg']['predictor']['name']}, frameskip {hparams['cfg']['frameskip']}) trained for "
             f"{checkpoint.get('global_step', '?')} steps on {task} ({hparams['cfg']['obs_type']} observations).", "",
             "```python", "import jepa_wm", "model = jepa_wm.load_world_model(\"hf:OWNER/NAME\")", "```", ""]
    if card:
        lines += ["## Card", "", "```json", json.dumps(card, indent=2), "```", ""]
    return "\n".join(lines)


def upload_checkpoint(reference: str, repo: str, private: bool = False) -> str:
    """Upload ``model.ckpt`` (weights and config, no optimizer state), ``card.json`` (for a shipped model)
    and a README model card to the Hugging Face repository ``repo``; returns its URL."""
    import tempfile

    from huggingface_hub import HfApi

    from jepa_wm.checkpoint import export_weights, read_checkpoint, resolve_checkpoint

    path = resolve_checkpoint(reference)
    checkpoint = read_checkpoint(path)
    card = pretrained_card(path.stem) if path.parent == PRETRAINED_DIR else None
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ConfigError(f"repo={repo} is not a Hugging Face repository name; use repo=OWNER/NAME")
    api = HfApi()
    with tempfile.TemporaryDirectory() as folder:
        export_weights(checkpoint, Path(folder) / HUB_FILENAME)
        (Path(folder) / "README.md").write_text(model_card(checkpoint, card).replace("OWNER/NAME", repo))
        if card:
            (Path(folder) / "card.json").write_text(json.dumps(card, indent=2))
        try:
            api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
            api.upload_folder(repo_id=repo, folder_path=folder, repo_type="model",
                              commit_message=f"jepa-wm checkpoint {Path(reference).name}")
        except Exception as error:  # no token, no network, no permission: the user's setup, said in one line
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ConfigError(f"cannot upload to Hugging Face repository '{repo}' ({type(error).__name__}: "
                              f"{first_line}); log in with `hf auth login` or set HF_TOKEN, and check the network") from None
    return f"https://huggingface.co/{repo}"
