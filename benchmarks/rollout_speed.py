"""Transformer rollout speed: the cached rollout (each new frame through the blocks once) against calling the
predictor on the whole growing sequence at every step, as planning uses them: one planner iteration's candidates
(configs/planner/cem.yaml's samples) rolled out over the plan's horizon from the model's history, without gradients.

Freshly initialised world models of the default pixel config with a transformer predictor (speed does not depend
on the weights), pooled (one token per frame) and with spatial tokens (16 per frame), at the sizes the levers study
uses. Both ways run in the same process, interleaved, medians over repeats after a warm-up call; the ratio is
whole-sequence time / cached time. The two give the same predictions (tests/test_components.py).

    python benchmarks/rollout_speed.py                 # CPU
    python benchmarks/rollout_speed.py device=cuda --write
"""

from __future__ import annotations

import os
import statistics

import torch

from _report import machine_description, timed, update_benchmarks_section
from jepa_wm.cli import benchmark
from jepa_wm.config import command_line, compose, load_group, model_config
from jepa_wm.module import JEPAWorldModel

MODELS = {  # name -> overrides of configs/model/pixels.yaml
    "pooled, transformer 256 x 4": ["model.predictor.name=transformer"],
    "spatial tokens, transformer 128 x 2 (levers: spatial-transformer)": [
        "model.predictor.name=transformer", "model.encoder.tokens=true", "model.predictor.hidden_dim=128",
        "model.predictor.depth=2"],
    "spatial tokens, transformer 256 x 4": [
        "model.predictor.name=transformer", "model.encoder.tokens=true", "model.predictor.depth=4"],
}


def main(argv: list[str]) -> None:
    options, flags = command_line(argv, {"device": "cuda" if torch.cuda.is_available() else "cpu", "repeats": 5})
    device, repeats = options["device"], int(options["repeats"])
    samples = int(load_group("planner", "cem").samples)
    horizon = int(compose("plan").mpc.horizon)
    load_before = os.getloadavg()[0]
    rows = []
    for name, overrides in MODELS.items():
        cfg = model_config(*overrides)
        model = JEPAWorldModel(cfg, (64, 64, 3), 2 * cfg.frameskip).world_model.eval().to(device)
        generator = torch.Generator().manual_seed(0)
        z_history = torch.randn(samples, model.history, model.num_tokens, model.embed_dim, generator=generator).to(device)
        past = torch.randn(samples, model.history - 1, model.action_dim, generator=generator).to(device)
        actions = torch.randn(samples, horizon, model.action_dim, generator=generator).to(device)
        cached, whole = [], []
        with torch.no_grad():
            for repeat in range(repeats + 1):  # the first of each warms up, and is dropped
                cached_s, _ = timed(lambda: model.rollout(z_history, actions, past), device)
                whole_s, _ = timed(lambda: model.rollout_whole_sequence(z_history, actions, past), device)
                if repeat:
                    cached.append(cached_s)
                    whole.append(whole_s)
        cached_ms, whole_ms = statistics.median(cached) * 1000, statistics.median(whole) * 1000
        rows.append((name, model.num_tokens, cached_ms, whole_ms))
        history = model.history
        print(f"{name}: cached {cached_ms:.1f} ms, whole sequence {whole_ms:.1f} ms ({whole_ms / cached_ms:.2f}x)")
    load_after = os.getloadavg()[0]
    text = "\n".join([
        f"Device: {device}. One planner iteration's rollouts: {samples} candidates (configs/planner/cem.yaml) x "
        f"{horizon} steps (configs/plan.yaml) from a history of {history} frames (configs/model/pixels.yaml), no gradients; median of {repeats} calls "
        f"after a warm-up call, the two ways interleaved. Load average (1 min) before / after: "
        f"{load_before:.2f} / {load_after:.2f}.",
        "",
        "| world model | tokens per frame | cached rollout ms | whole-sequence ms | speed-up |",
        "| --- | ---: | ---: | ---: | ---: |",
        *[f"| {name} | {tokens} | {cached_ms:.1f} | {whole_ms:.1f} | {whole_ms / cached_ms:.2f}x |"
          for name, tokens, cached_ms, whole_ms in rows],
    ])
    print(text)
    if "--write" in flags:
        command = "python benchmarks/rollout_speed.py " + " ".join(argv)
        update_benchmarks_section(f"Transformer rollout speed ({device})", text, command, machine_description(device))


if __name__ == "__main__":
    benchmark(main)
