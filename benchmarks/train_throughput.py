"""Training throughput: frames per second and peak memory for the default pixel and state configs.

A frame is one observation in a training window (batch_size x (history + rollout_steps) frames per
step), through the whole training step: encoder, predictor, rollout, regularizers, backward, AdamW.
Batches are synthetic tensors of the right shapes, so the numbers measure the model, not the disk.

    python benchmarks/train_throughput.py                 # CPU
    python benchmarks/train_throughput.py --write         # and record in BENCHMARKS.md
"""

from __future__ import annotations

import resource
import statistics

import torch

from _report import machine_description, timed, update_benchmarks_section

from jepa_wm.cli import benchmark
from jepa_wm.config import (
    command_line,
    model_config,
)
from jepa_wm.module import JEPAWorldModel

CONFIGS = {  # name: (overrides, observation shape, action size of reacher)
    "pixels (default)": ([], (64, 64, 3), 2),
    "pixels (wide conv, D=64)": (["model.encoder.channels=[32,64,128,256]", "model.encoder.embed_dim=64",
                                  "model.predictor.hidden_dim=512"], (64, 64, 3), 2),
    "state (default)": (["model=state"], (6,), 2),
    "pixels + decoder (reconstruction)": (["model.decoder.enabled=true", "model.decoder.detach=false"], (64, 64, 3), 2),
}


def synthetic_batch(obs_shape, frames: int, action_dim: int, batch_size: int, device: str) -> dict:
    if len(obs_shape) == 3:
        obs = torch.randint(0, 256, (batch_size, frames, *obs_shape), dtype=torch.uint8, device=device)
    else:
        obs = torch.randn(batch_size, frames, *obs_shape, device=device)
    return {"obs": obs, "actions": torch.rand(batch_size, frames - 1, action_dim, device=device) * 2 - 1,
            "position": torch.randn(batch_size, frames, 2, device=device)}


def measure(overrides, obs_shape, action_dim, batch_size: int, steps: int, repeats: int, device: str):
    cfg = model_config(*overrides)
    model = JEPAWorldModel(cfg, obs_shape, action_dim * cfg.frameskip).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    frames = cfg.history + cfg.rollout_steps
    batch = synthetic_batch(obs_shape, frames, action_dim * cfg.frameskip, batch_size, device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def train_steps(count: int) -> float:
        def steps_in_a_row():
            for _ in range(count):
                loss, _ = model.compute_losses(batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

        return timed(steps_in_a_row, device)[0]

    train_steps(2)  # warm-up
    rates = [steps * batch_size * frames / train_steps(steps) for _ in range(repeats)]
    if device == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process high-water mark
    return statistics.median(rates), peak_mb, sum(p.numel() for p in model.parameters() if p.requires_grad)


def main(argv: list[str]) -> None:
    options, flags = command_line(argv, {"device": "cuda" if torch.cuda.is_available() else "cpu", "batch_size": 64,
                                         "steps": 5, "repeats": 3})
    device, batch_size, steps, repeats = options["device"], options["batch_size"], options["steps"], options["repeats"]
    lines = [
        f"Device: {device}; batch {batch_size} windows; median of {repeats} runs of {steps} steps after 2 warm-up "
        f"steps. Peak memory: {'CUDA max allocated' if device == 'cuda' else 'process max RSS (cumulative over rows)'}.",
        "",
        "| config | trainable params | frames / s | steps / s | peak memory (MB) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, (overrides, obs_shape, action_dim) in CONFIGS.items():
        rate, peak_mb, params = measure(overrides, obs_shape, action_dim, batch_size, steps, repeats, device)
        frames = model_config(*overrides)
        per_step = batch_size * (frames.history + frames.rollout_steps)
        lines.append(f"| {name} | {params:,} | {rate:,.0f} | {rate / per_step:.2f} | {peak_mb:,.0f} |")
        print(lines[-1])
    text = "\n".join(lines)
    if "--write" in flags:
        command = "python benchmarks/train_throughput.py " + " ".join(argv)
        update_benchmarks_section(f"Training throughput ({device})", text, command, machine_description(device))


if __name__ == "__main__":
    benchmark(main)
