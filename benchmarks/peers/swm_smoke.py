"""Load a model trained by stable-worldmodel 0.1.1's training scripts and ask it for actions on one
episode of an HDF5 dataset exported by ``jepa_wm.data.interop.export_hdf5``: a CEM plan (LeWM, PLDM:
``get_cost`` through stable-worldmodel's ``CEMSolver``) or a policy action (GCBC/GCIVL: ``get_action``).

Runs in the peers venv only (it imports stable_worldmodel):

    STABLEWM_HOME=H /work/peers-venv/bin/python benchmarks/peers/swm_smoke.py \
        checkpoint=H/checkpoints/lewm/weights_epoch_1.pt data=reacher.h5 [episode=0 start=0 goal_offset=25]
        [samples=300 iterations=30 topk=30 horizon=5 action_block=5]

Loading: the training scripts save ``model.state_dict()`` as ``<name>/weights_epoch_<N>.pt`` with the
*whole* hydra config as ``config.json`` (``save_pretrained(config=cfg)``), while 0.1.1's
``load_pretrained`` instantiates ``config.json`` as the model itself; so a script-trained LeWM/PLDM
loads by instantiating ``config["model"]`` (what ``load_pretrained`` does for a config that is the
model's). gcbc.py/gcivl.py build their model in code (no ``_target_`` in the config): it is rebuilt here
the way gcbc.py builds it with ``encoder_type=vit_tiny`` and no proprio encoder, the only case supported
(for gcivl, the ``<name>_policy`` checkpoint).

Preprocessing follows the training scripts: pixels -> float in [0, 1], ImageNet mean/std, resized to
``img_size``; actions are planned in the z-scored action space the model was trained in (the column
normalizer of the training scripts); this tool reports them in that space and in env units.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


def load_model(checkpoint: str | Path) -> tuple[torch.nn.Module, dict]:
    """The model saved at ``checkpoint`` (a ``weights_epoch_<N>.pt`` with ``config.json`` beside it)."""
    from hydra.utils import instantiate

    checkpoint = Path(checkpoint)
    config = json.loads((checkpoint.parent / "config.json").read_text())
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if "_target_" in config:
        model = instantiate(config)
    elif isinstance(config.get("model"), dict) and "_target_" in config["model"]:
        model = instantiate(config["model"])
    elif "dinowm" in config:
        model = build_gcrl(config)
        # gcivl.py's actor wraps the trained encoder in EvalOnly (keys encoder.backbone.*) and carries the
        # value predictor, which acting does not use.
        state = {(key.replace("encoder.backbone.", "encoder.", 1) if key.startswith("encoder.backbone.") else key):
                 value for key, value in state.items() if not key.startswith("value_predictor.")}
    else:
        raise SystemExit(f"{checkpoint.parent / 'config.json'} describes no model this tool can build")
    model.load_state_dict(state)
    return model.eval().requires_grad_(False), config


def build_gcrl(config: dict) -> torch.nn.Module:
    """gcbc.py's model with encoder_type=vit_tiny, without the proprio encoder."""
    import stable_pretraining as spt
    from stable_worldmodel.wm.gcrl.gcrl import GCRL
    from stable_worldmodel.wm.gcrl.module import Predictor

    if config.get("encoder_type") != "vit_tiny" or config["dinowm"].get("use_proprio_encoder", True):
        raise SystemExit("only gcbc/gcivl models with encoder_type=vit_tiny and dinowm.use_proprio_encoder=false "
                         "are rebuilt here")
    encoder = spt.backbone.utils.vit_hf("tiny", patch_size=config["patch_size"], image_size=config["image_size"],
                                        pretrained=False, use_mask_token=False)
    predictor = Predictor(num_patches=(config["image_size"] // config["patch_size"]) ** 2,
                          num_frames=config["dinowm"]["history_size"], dim=encoder.config.hidden_size,
                          out_dim=config["frameskip"] * config["dinowm"]["action_dim"], **config["predictor"])
    return GCRL(encoder=encoder, action_predictor=predictor, extra_encoders=None,
                history_size=config["dinowm"]["history_size"])


def preprocess(frames: np.ndarray, size: int) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, size, size) float, as the training scripts' image pipeline."""
    from torchvision.transforms import v2

    pixels = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    pipeline = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(**IMAGENET), v2.Resize(size)])
    return pipeline(pixels)


def main(argv: list[str]) -> None:
    import gymnasium as gym
    import h5py
    from stable_worldmodel.policy import PlanConfig
    from stable_worldmodel.solver import CEMSolver

    options = dict(arg.split("=", 1) for arg in argv)
    get = lambda key, default: type(default)(options.get(key, default))  # noqa: E731
    model, config = load_model(options["checkpoint"])
    size = int(config.get("img_size", config.get("image_size", 224)))
    episode, start, offset = get("episode", 0), get("start", 0), get("goal_offset", 25)
    with h5py.File(options["data"], "r") as file:
        first = int(file["ep_offset"][episode])
        actions = file["action"][:]
        valid = actions[~np.isnan(actions).any(axis=1)]
        mean, std = valid.mean(0), valid.std(0)  # the training scripts' z-score action normalizer
        current = file["pixels"][first + start:first + start + 1]
        goal = file["pixels"][first + start + offset:first + start + offset + 1]
        action_dim = actions.shape[1]
    info = {"pixels": preprocess(current, size)[None], "goal": preprocess(goal, size)[None]}
    began = time.perf_counter()
    if hasattr(model, "get_cost"):
        block = get("action_block", 5)
        plan = PlanConfig(horizon=get("horizon", 5), receding_horizon=get("horizon", 5), action_block=block)
        info["action"] = torch.zeros(1, 1, action_dim * block)
        solver = CEMSolver(model, num_samples=get("samples", 300), n_steps=get("iterations", 30),
                           topk=get("topk", 30), var_scale=1.0, device="cpu", seed=0)
        solver.configure(action_space=gym.spaces.Box(-1.0, 1.0, (1, action_dim), np.float32), n_envs=1,
                         config=plan)
        result = solver.solve(info)
        normalized = result["actions"][0].reshape(-1, action_dim).numpy()
        print(f"{type(model).__name__}: CEM plan of {normalized.shape[0]} env steps, elite cost "
              f"{result['costs'][0]:.4f}, {time.perf_counter() - began:.2f} s")
    else:
        with torch.inference_mode():
            normalized = model.get_action(info).reshape(-1, action_dim).numpy()
        print(f"{type(model).__name__}: policy action block of {normalized.shape[0]} env steps, "
              f"{time.perf_counter() - began:.2f} s")
    print("first actions (normalized):", np.round(normalized[:3], 3).tolist())
    print("first actions (env units): ", np.round(normalized[:3] * std + mean, 3).tolist())


if __name__ == "__main__":
    main(sys.argv[1:])
