"""Which training lever helps a world model on contact tasks? The suite's model and one change each.

The variants of ``configs/levers.yaml`` (longer training, a wider encoder, a larger predictor, a heavier
multi-step loss) are trained on the suite's data with the suite's stages (``benchmarks/suite.py``:
resumable, reused when finished) and planned on *dev* episodes: this study chooses defaults, so it never
looks at the test episodes the suite reports. Beside success: the validation rollout error relative to
copying the last embedding, the probe R^2 of the goal coordinates (does the encoding hold what success
asks for?) and the latent/true distance rank correlation, as in the ablation.

    python benchmarks/levers.py                          # everything; finished stages are reused
    python benchmarks/levers.py stages=[report] --write
"""

from __future__ import annotations

from pathlib import Path

import ablation
import suite

from jepa_wm.cli import benchmark

FIGURE = Path(__file__).resolve().parent / "figures" / "levers.png"
SECTION = "Levers for contact tasks: training, encoder, predictor, multi-step loss (cpu, dev episodes)"


def report(cfg, out: Path, timings: suite.Timings) -> str:
    return ablation.report(cfg, out, timings, figure=FIGURE)


if __name__ == "__main__":
    benchmark(lambda argv: suite.main(argv, config="levers", section=SECTION, reporter=report))
