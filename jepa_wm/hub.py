"""Publishing checkpoints: a Hugging Face Hub model repository with the weights, the card and a README."""

from __future__ import annotations

import json
from pathlib import Path

from jepa_wm import references
from jepa_wm.checkpoint import export_weights, read_checkpoint
from jepa_wm.errors import ConfigError, first_line
from jepa_wm.references import HUB_FILENAME, pretrained_card, resolve_checkpoint


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

    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:  # the name first: a mistake in it costs no reading and no network
        if not isinstance(repo, str) or repo.count("/") != 1 or not all(repo.split("/")):
            raise HFValidationError("it must be OWNER/NAME")
        validate_repo_id(repo)
    except HFValidationError as error:
        raise ConfigError(f"repo={repo} is not a Hugging Face repository name ({first_line(error)}); "
                          f"use repo=OWNER/NAME") from None
    path = resolve_checkpoint(reference)
    checkpoint = read_checkpoint(path)
    card = pretrained_card(path.stem) if path.parent == references.PRETRAINED_DIR else None
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
            reason = first_line(error) or type(error).__name__
            raise ConfigError(f"cannot upload to Hugging Face repository '{repo}' ({type(error).__name__}: "
                              f"{reason}); log in with `hf auth login` or set HF_TOKEN, and check the network") from None
    return f"https://huggingface.co/{repo}"
