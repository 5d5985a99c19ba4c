"""torch.hub entry points: one per shipped pretrained world model.

    model = torch.hub.load("OWNER/jepa-wm", "reacher_easy")                   # from GitHub
    model = torch.hub.load("/path/to/jepa-wm", "reacher_easy", source="local")  # from a clone
    torch.hub.list("OWNER/jepa-wm")                                           # what exists

Each returns a ``jepa_wm.WorldModel`` in eval mode (loaded with ``weights_only=True``); its card is
``jepa_wm.references.pretrained_card(name)``.
"""

dependencies = ["torch", "pytorch_lightning", "timm", "omegaconf"]

from jepa_wm.references import pretrained_names  # noqa: E402


def _entry(name: str):
    def load(device: str = "cpu"):
        from jepa_wm.checkpoint import load_world_model

        return load_world_model(f"pretrained:{name}", device=device)

    load.__name__ = name.replace("-", "_")
    load.__doc__ = f"The shipped world model for {name} (see jepa_wm/pretrained/{name}.json)."
    return load


for _name in pretrained_names():
    globals()[_name.replace("-", "_")] = _entry(_name)
