"""Plan with a peer's world model (LeWM or PLDM, trained by stable-worldmodel 0.1.1's own scripts) through OUR
planner, cost and MPC loop, on our episodes: the adapter isolates the model, so a difference in success is the
model's, not the solver's or the evaluator's.

Runs in the peers venv only (it imports stable_worldmodel):

    /work/peers-venv/bin/python benchmarks/peers/plan_peers.py \
        checkpoint=H/checkpoints/lewm/weights_epoch_N.pt data=reacher-easy.h5 env=reacher-easy \
        out=runs/peers/reacher-easy/lewm-seed0 [episodes=50 split=test seed=0] [any configs/plan.yaml key=value]

``PeerWorldModel`` gives our ``LatentGoalCost`` what it asks of a world model: ``encode`` frames into one token
per frame (the peer's projected CLS embedding), and ``rollout`` candidates autoregressively the way the peer's own
``rollout`` does (each frame's embedding paired with the action taken from it, a window of the predictor's
``num_frames``). Candidates are in env units, as our planner samples them; the peer was trained on z-scored
actions (its training scripts' column normalizer), so they are z-scored with the statistics of the training file
(``data=``) before the peer's action encoder sees them. The cost is ours with the latent l2 (the peer has no learned
cost head); everything else (planner, budget, horizon, replanning, episodes, success) comes from configs/plan.yaml.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from swm_smoke import load_model, preprocess


class PeerWorldModel:
    """A LeWM/PLDM model behind the interface our planning code uses (see ``jepa_wm.world_model.WorldModel``)."""

    policy = None
    learned_cost = None

    def __init__(self, model: torch.nn.Module, config: dict, action_mean: np.ndarray, action_std: np.ndarray,
                 device: str = "cpu"):
        """``action_mean``/``action_std``: per env action, as ``action_statistics`` reads them."""
        self.model = model.to(device)
        self.device = torch.device(device)
        self.image_size = int(config.get("img_size", config.get("image_size", 224)))
        self.frameskip = int(config["data"]["dataset"]["frameskip"]) if "data" in config else 5
        self.history = int(getattr(model.predictor, "num_frames", 3))
        # a model step's action is frameskip env actions concatenated, as the peer's training clips hold them
        self.action_mean = torch.as_tensor(np.tile(action_mean, self.frameskip), dtype=torch.float32, device=self.device)
        self.action_std = torch.as_tensor(np.tile(action_std, self.frameskip), dtype=torch.float32, device=self.device)
        self.action_dim = len(self.action_mean)
        self.cfg = {"obs_type": "pixels", "name": type(model).__name__}

    @torch.no_grad()
    def encode(self, frames) -> torch.Tensor:
        """uint8 frames (B, T, H, W, 3) -> (B, T, 1, D)."""
        frames = torch.as_tensor(frames)
        batch, steps = frames.shape[:2]
        pixels = preprocess(frames.reshape(-1, *frames.shape[2:]).cpu().numpy(), self.image_size).to(self.device)
        embedded = self.model.encode({"pixels": pixels.reshape(batch, steps, *pixels.shape[1:])})["emb"]
        return embedded[:, :, None, :]

    encode_target = encode  # the peers predict into their online encoder's space

    @torch.no_grad()
    def rollout(self, z_history: torch.Tensor, actions: torch.Tensor, past_actions: torch.Tensor | None = None):
        """z_history (N, H, 1, D), actions (N, K, A) in env units, past_actions (N, H-1, A) -> (N, K, 1, D)."""
        count = z_history.shape[0]
        past = past_actions if past_actions is not None else actions.new_zeros(count, z_history.shape[1] - 1, actions.shape[-1])
        taken = torch.cat([past.to(self.device), actions.to(self.device)], dim=1)  # the action from each frame on
        action_embeddings = self.model.action_encoder((taken - self.action_mean) / self.action_std)
        embeddings = list(z_history[:, :, 0].to(self.device).unbind(dim=1))
        first = len(embeddings)
        for step in range(actions.shape[1]):
            low = max(0, first + step - self.history)
            window = torch.stack(embeddings[low:], dim=1)
            embeddings.append(self.model.predict(window, action_embeddings[:, low:first + step])[:, -1])
        return torch.stack(embeddings[first:], dim=1)[:, :, None, :]


def action_statistics(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the actions of an exported training file, NaN rows (episode ends) left out: what the peer's
    training scripts z-scored with. Each row is one env step's action; a model step concatenates ``frameskip``."""
    import h5py

    with h5py.File(path, "r") as file:
        actions = file["action"][:]
    valid = actions[~np.isnan(actions).any(axis=1)]
    return valid.mean(0), valid.std(0)


def main(argv: list[str]) -> None:
    from jepa_wm.config import compose, load_group, to_dict
    from jepa_wm.data.envs import make_env
    from jepa_wm.planning.evaluate import evaluate, summarize, write_report
    from jepa_wm.planning.experiment import build_ours

    options = dict(arg.split("=", 1) for arg in argv if arg.split("=", 1)[0] in ("checkpoint", "data", "env", "out"))
    plan_overrides = [arg for arg in argv if arg.split("=", 1)[0] not in options]
    model, config = load_model(options["checkpoint"])
    peer = PeerWorldModel(model, config, *action_statistics(options["data"]))
    plan_cfg = compose("plan", ["cost.name=l2", f"env={options['env']}", *plan_overrides])
    env = make_env({**to_dict(load_group("env", options["env"])), "obs_type": "pixels"})
    controller = build_ours(plan_cfg, peer, peer.action_dim, peer.frameskip, "cpu")
    records = evaluate(env, {"ours": controller}, plan_cfg.episodes, plan_cfg.seed, split=plan_cfg.split,
                       progress=plan_cfg.progress)
    row = summarize(records["ours"], env.name, "ours", plan_cfg.planner.name, plan_cfg.seed, plan_cfg.split)
    out = Path(options["out"])
    out.mkdir(parents=True, exist_ok=True)
    write_report(out / "report.json", [row], {**to_dict(plan_cfg), "checkpoint": options["checkpoint"]},
                 cost=controller.cost_model.description, model=peer.cfg["name"])
    print(f"{peer.cfg['name']} on {env.name}: {row['success_rate']:.0%} of {row['episodes']} {plan_cfg.split} episodes")
    env.close()


if __name__ == "__main__":
    main(sys.argv[1:])
