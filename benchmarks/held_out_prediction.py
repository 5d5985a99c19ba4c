"""Does a world model predict how each success joint moves on episodes it never saw, or only on its own?

A probe of the task's success coordinates (an MLP, angles as sin and cos, as the decoded cost reads them) is fitted
on the model's encodings of its training episodes, then reads the model's open-loop predictions 1 and 5 model steps
ahead (the episodes' own actions) on those episodes and on held-out ones collected the same way with another seed.
Per success joint, the median error (its units; hinges within their period) where the joint moves by more than the
task's tolerance over the prediction, beside predicting no change, and where it stays. A model that predicts a
joint's motion on its training episodes and not on held-out ones has learned those episodes, not the dynamics:
more data, not a better planner or cost, is what it lacks.

    python benchmarks/held_out_prediction.py checkpoint=runs/suite/finger-spin/default/seed-0/checkpoints/last.ckpt \\
        train=runs/suite/finger-spin/dataset held_out=datasets/finger-spin-7
    (held-out data: jepa-wm collect env=finger-spin out=datasets/finger-spin-7 episodes=30 seed=7;
    train= takes a list of datasets as data.path does: train=[datasets/a,datasets/b])
"""

from __future__ import annotations


import numpy as np
import torch

from jepa_wm.checkpoint import load_world_model
from jepa_wm.cli import benchmark
from jepa_wm.config import command_line
from jepa_wm.data.dataset import load_episodes
from jepa_wm.data.envs.tasks import wrap_angles
from jepa_wm.errors import ConfigError
from jepa_wm.learned_cost import coordinates_from_targets, success_targets
from jepa_wm.pipeline import embed_episodes, success_coordinates
from jepa_wm.policy import relabelled_examples

HORIZONS = (1, 5)  # model steps ahead


def fit_probe(features: torch.Tensor, targets: torch.Tensor, steps: int = 2000, seed: int = 0) -> torch.nn.Module:
    """An MLP from flattened embeddings (N, F) to success targets (N, T), inputs standardised inside."""
    torch.manual_seed(seed)
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    net = torch.nn.Sequential(torch.nn.Linear(features.shape[1], 256), torch.nn.GELU(), torch.nn.Linear(256, 256),
                              torch.nn.GELU(), torch.nn.Linear(256, targets.shape[1]))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(steps):
        index = torch.randint(len(features), (256,))
        loss = torch.nn.functional.mse_loss(net((features[index] - mean) / std), targets[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return torch.nn.Sequential(_Standardise(mean, std), net).eval()


class _Standardise(torch.nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def prediction_errors(model, episodes, probe, periods, steps: int, count: int, seed: int = 0):
    """Per drawn window: the probe's reading of the prediction ``steps`` ahead, the true coordinates there and at
    the window's last history frame (count, C) each."""
    def draw(history, goals):  # the same windows for embeddings and coordinates
        return relabelled_examples(history, goals, episodes.actions, count, model.history, steps, model.frameskip,
                                   torch.Generator().manual_seed(seed), goal="block")

    examples = draw(episodes.history, episodes.goals)
    coordinates = draw(episodes.coordinates, episodes.coordinates)
    z_history = examples.z_history.reshape(count, model.history, model.num_tokens, model.embed_dim)
    with torch.no_grad():
        predicted = model.rollout(z_history, examples.actions, examples.past_actions)[:, -1].flatten(1)
        read = coordinates_from_targets(probe(predicted.float()), periods)
    return read.numpy(), coordinates.goal.numpy(), coordinates.z_history[:, -1].numpy()


def success_tolerance(store) -> float:
    """The task's success tolerance (a joint's, or the distance of a position criterion) as its env resolves it."""
    from jepa_wm.data.envs import make_env

    env = make_env(store.manifest["env"])
    try:
        return float(env.success_threshold)
    finally:
        env.close()


def main(argv: list[str]) -> None:
    options, flags = command_line(argv, {"checkpoint": None, "train": None, "held_out": None, "windows": 4096})
    for key in ("checkpoint", "train", "held_out"):
        if not options[key]:
            raise ConfigError(f"{key}= is required (see python benchmarks/held_out_prediction.py's docstring)")
    model = load_world_model(options["checkpoint"])
    train_store = load_episodes(options["train"], model.cfg["obs_type"])
    held_store = load_episodes(options["held_out"], model.cfg["obs_type"])
    periods, names = success_coordinates(train_store)
    tolerance = success_tolerance(train_store)
    train = embed_episodes(model, train_store, list(range(train_store.num_episodes)))
    held_out = embed_episodes(model, held_store, list(range(held_store.num_episodes)))
    probe = fit_probe(train.history.flatten(0, 1), success_targets(train.coordinates.flatten(0, 1), periods))
    angle_periods = np.asarray(periods, np.float64)
    lines = [
        f"Model: {options['checkpoint']}; probe fitted on its encodings of {train_store.num_episodes} training "
        f"episodes ({options['train']}); held out: {held_store.num_episodes} episodes ({options['held_out']}). "
        f"{options['windows']} windows per row; a joint moves when it changes by more than {tolerance:g} over the "
        "prediction. Errors: medians, in the joint's units (hinges within their period).",
        "",
        "| episodes | steps ahead | joint | windows where it moves | error where it moves | no change predicted "
        "| error where it stays |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for label, episodes in (("training", train), ("held out", held_out)):
        for steps in HORIZONS:
            read, truth, start = prediction_errors(model, episodes, probe, periods, steps, int(options["windows"]))
            error = np.abs(wrap_angles(read - truth, angle_periods))
            change = np.abs(wrap_angles(truth - start, angle_periods))
            for index, name in enumerate(names):
                moved = change[:, index] > tolerance
                if not moved.any():
                    continue
                stays = f"{np.median(error[~moved, index]):.3f}" if not moved.all() else "-"
                lines.append(f"| {label} | {steps} | {name} | {moved.mean():.0%} | {np.median(error[moved, index]):.3f} | "
                             f"{np.median(change[moved, index]):.3f} | {stays} |")
    print("\n".join(lines))
    if "--write" in flags:
        from _report import machine_description, update_benchmarks_section

        command = "python benchmarks/held_out_prediction.py " + " ".join(argv)
        update_benchmarks_section("Predicting contact on held-out episodes (cpu)", "\n".join(lines), command,
                                  machine_description("cpu"))


if __name__ == "__main__":
    benchmark(main)
