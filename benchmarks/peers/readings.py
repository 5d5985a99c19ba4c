"""Why a world model plans well or badly, read the same way for ours and for a peer, on the same frames: what its
embedding holds of the task's goal coordinates, whether its latent distance ranks like the true one, and how far
its predictor's open-loop rollouts stay from the frames they predict.

Runs in the peers venv (it loads LeWM/PLDM through ``plan_peers.py``; ``jepa_wm`` is installed there too):

    /work/peers-venv/bin/python benchmarks/peers/readings.py model=pretrained:reacher-easy data=reacher-easy.h5 \
        out=readings/reacher-easy-ours.json
    /work/peers-venv/bin/python benchmarks/peers/readings.py model=H/checkpoints/X/weights_epoch_1.pt \
        data=reacher-easy.h5 out=readings/reacher-easy-lewm.json

``data``: a dynamics group's dataset in stable-worldmodel's HDF5 layout (``peers_study.py`` exports it). Every model
reads the same frames of its last ``episodes`` episodes:
- ``probe_r2``: a ridge probe of the goal coordinates (the ``position`` column; hinge angles as sin and cos) from one
  frame's embedding, every 2nd frame, fitted on the first half of the episodes (its ridge chosen inside that half)
  and scored on the other half: no frame of a scored episode is fitted;
- ``distance_rank_correlation``: Spearman's rank correlation of latent and true distances over pairs of those frames
  of one episode (one scene, as a frame and its goal are), averaged over the episodes: what a planner minimising a
  latent distance to a goal relies on;
- ``rollout_ratio``: on ``count`` windows at random starts (seed 0), the open-loop prediction error (squared L2 to the
  encoding of the frame predicted) at each of ``steps`` model steps, divided by the error of copying the last seen
  embedding: < 1 beats "nothing moves".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def load(reference: str, data: str):
    """Ours (a checkpoint path or ``pretrained:NAME``) or a peer's ``weights_epoch_<N>.pt``, behind our world-model
    interface (``encode``, ``encode_target``, ``rollout``, ``history``, ``frameskip``)."""
    if reference.endswith(".pt"):
        from plan_peers import PeerWorldModel, action_statistics
        from swm_smoke import load_model

        model, config = load_model(reference)
        return PeerWorldModel(model, config, *action_statistics(data))
    from jepa_wm.checkpoint import load_world_model

    return load_world_model(reference)


def last_episodes(file, episodes: int) -> tuple[np.ndarray, np.ndarray, range]:
    """The file's episode lengths and first rows, and the indices of its last ``episodes`` episodes (the frames every
    model reads)."""
    lengths, offsets = file["ep_len"][:], file["ep_offset"][:]
    return lengths, offsets, range(len(lengths) - episodes, len(lengths))


def windows(file, episodes: int, count: int, span: int, frameskip: int, seed: int = 0) -> list[tuple[int, int]]:
    """``count`` (episode, first row) pairs of the last ``episodes`` episodes, each with ``span`` model steps of
    ``frameskip`` rows inside the episode and no NaN action (the last row's)."""
    lengths, offsets, chosen = last_episodes(file, episodes)
    rng = np.random.default_rng(seed)
    picks = []
    for index in range(count):
        episode = chosen[index % len(chosen)]
        last_start = int(lengths[episode]) - 1 - span * frameskip
        if last_start < 0:
            raise SystemExit(f"episode {episode} has {lengths[episode]} rows: too short for {span} steps of {frameskip}")
        picks.append((episode, int(offsets[episode]) + int(rng.integers(0, last_start + 1))))
    return picks


RIDGES = (1e-3, 1e-2, 1e-1, 1.0, 10.0)  # the probe's ridge, chosen by 2-fold validation inside the fitted half


def angle_periods_of(file) -> np.ndarray:
    """The period of each goal coordinate (0: not an angle; angles are read as sin and cos), from the manifest
    ``export_hdf5`` stores in the file; no angles when the file has no manifest."""
    if "jepa_wm_manifest" not in file.attrs:
        return np.zeros(file["position"].shape[1])
    from jepa_wm.data.envs import make_env

    env = make_env(json.loads(file.attrs["jepa_wm_manifest"])["env"])
    try:
        return env.angle_periods
    finally:
        env.close()


def probe_r2(z: torch.Tensor, targets: torch.Tensor, episode_of: np.ndarray) -> float:
    """A ridge probe fitted on the first half of the episodes (its ridge chosen by fitting one half of those and
    scoring the other) and scored on the second half: no frame of a scored episode is ever fitted."""
    from jepa_wm.metrics import linear_probe_r2

    middle = np.median(np.unique(episode_of))
    fit = torch.as_tensor(episode_of < middle)
    inner = torch.as_tensor(episode_of < np.median(np.unique(episode_of[fit.numpy()])))
    a, b = fit & inner, fit & ~inner
    ridge = max(RIDGES, key=lambda r: float(linear_probe_r2(z[a], targets[a], z[b], targets[b], ridge=r)))
    return float(linear_probe_r2(z[fit], targets[fit], z[~fit], targets[~fit], ridge=ridge))


@torch.no_grad()
def embedding_readings(model, file, episodes: int, stride: int = 2, seed: int = 0) -> dict:
    """Probe R^2 and the distance rank correlation, from every ``stride``-th frame of the last ``episodes``."""
    from jepa_wm.learned_cost import success_targets
    from jepa_wm.metrics import distance_rank_correlation

    lengths, offsets, chosen = last_episodes(file, episodes)
    rows = np.concatenate([np.arange(offsets[e], offsets[e] + lengths[e], stride) for e in chosen])
    episode_of = np.concatenate([np.full(len(range(0, lengths[e], stride)), e) for e in chosen])
    pixels, positions = file["pixels"][rows], torch.as_tensor(file["position"][rows])
    targets = success_targets(positions, angle_periods_of(file)).double()  # hinge angles as sin and cos
    z = torch.cat([model.encode(torch.as_tensor(pixels[low:low + 64])[:, None]).flatten(1)
                   for low in range(0, len(rows), 64)]).double()
    # within an episode, as a planner compares a frame with a goal of the same scene (reacher's target differs
    # between episodes and would dominate pairs across them)
    within = [float(distance_rank_correlation(z[mask], targets[mask]))
              for mask in (torch.as_tensor(episode_of == e) for e in chosen)]
    return {"probe_frames": len(rows), "probe_r2": round(probe_r2(z, targets, episode_of), 3),
            "distance_rank_correlation": round(float(np.mean(within)), 3)}


@torch.no_grad()
def rollout_readings(model, file, episodes: int, count: int, steps: int, seed: int = 0) -> dict:
    """Open-loop prediction error at each of ``steps`` model steps over that of copying the last seen embedding."""
    history, frameskip = int(model.history), int(model.frameskip)
    span = history + steps
    picks = windows(file, episodes, count, span, frameskip, seed)
    rows = np.array([[start + frameskip * k for k in range(span)] for _, start in picks])
    pixels = np.stack([file["pixels"][window] for window in rows])  # rows rise within a window
    actions_per_row = file["action"][:]
    # a model step's action: its frameskip env actions concatenated
    actions = torch.as_tensor(np.stack([
        np.concatenate([actions_per_row[row + offset] for offset in range(frameskip)])
        for window in rows for row in window[:-1]]).reshape(len(rows), span - 1, -1), dtype=torch.float32)
    targets, encoded = [], []
    for low in range(0, len(rows), 32):  # (B, T, H, W, 3) uint8, as the env returns frames
        batch = torch.as_tensor(pixels[low:low + 32])
        encoded.append(model.encode(batch[:, :history]))
        targets.append(model.encode_target(batch))
    z_history, z_target = torch.cat(encoded), torch.cat(targets)
    past, future = actions[:, :history - 1], actions[:, history - 1:]
    predicted = torch.cat([model.rollout(z_history[low:low + 32], future[low:low + 32], past[low:low + 32])
                           for low in range(0, len(rows), 32)])
    truth, last_seen = z_target[:, history:], z_target[:, history - 1:history]
    error = (predicted - truth).pow(2).flatten(2).sum(-1).mean(0)
    copy_error = (last_seen - truth).pow(2).flatten(2).sum(-1).mean(0)
    return {"windows": len(rows), "history": history, "frameskip": frameskip,
            "rollout_ratio": [round(float(value), 3) for value in error / copy_error.clamp_min(1e-12)]}


def readings(model, data: str, episodes: int = 40, count: int = 480, steps: int = 5, seed: int = 0) -> dict:
    import h5py

    with h5py.File(data, "r") as file:
        return {"episodes": episodes, **embedding_readings(model, file, episodes, seed=seed),
                **rollout_readings(model, file, episodes, count, steps, seed)}


def main(argv: list[str]) -> None:
    options = dict(arg.split("=", 1) for arg in argv)
    unknown = sorted(set(options) - {"model", "data", "out", "episodes", "count", "steps"})
    if unknown or not {"model", "data", "out"} <= set(options):
        raise SystemExit("usage: readings.py model=CHECKPOINT data=FILE.h5 out=FILE.json [episodes=40 count=480 steps=5]")
    torch.manual_seed(0)
    result = readings(load(options["model"], options["data"]), options["data"], int(options.get("episodes", 40)),
                      int(options.get("count", 480)), int(options.get("steps", 5)))
    from jepa_wm.files import write_json_atomic

    out = Path(options["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, {"model": options["model"], "data": options["data"], **result})
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
