"""Upload a checkpoint (weights and config only) and its card to a Hugging Face Hub model repository.

    python scripts/upload_checkpoint.py checkpoint=runs/X/checkpoints/best.ckpt repo=OWNER/NAME
    python scripts/upload_checkpoint.py checkpoint=pretrained:reacher-easy repo=OWNER/jepa-wm-reacher-easy

Afterwards ``load_world_model("hf:OWNER/NAME")`` and ``plan.py checkpoint=hf:OWNER/NAME`` load it. Needs
a token (``huggingface-cli login`` or ``HF_TOKEN``).
"""

from _cli import run_cli


def main(argv: list[str]) -> None:
    from jepa_wm.errors import ConfigError
    from jepa_wm.zoo import upload_checkpoint

    options = dict(argument.lstrip("-").split("=", 1) for argument in argv if "=" in argument)
    unknown = sorted(set(options) - {"checkpoint", "repo", "private"})
    if unknown or "checkpoint" not in options or "repo" not in options:
        raise ConfigError(f"usage: upload_checkpoint.py checkpoint=PATH repo=OWNER/NAME [private=true]"
                          f"{f' (unknown: {unknown})' if unknown else ''}")
    url = upload_checkpoint(options["checkpoint"], options["repo"], private=options.get("private") == "true")
    print(f"uploaded: {url}\nload it with: checkpoint=hf:{options['repo']}")


if __name__ == "__main__":
    run_cli(main)
