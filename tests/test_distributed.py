"""DDP with 2 CPU processes (gloo): the same loss and gradients as one process with the whole batch,
identical weights on every rank, one checkpoint, and a NaN on one rank stopping every rank."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from jepa_wm import JEPAWorldModel
from jepa_wm.config import compose, model_config

ROOT = Path(__file__).resolve().parents[1]
BATCH = 16  # the whole batch; each of 2 ranks gets 8
REGULARIZED = ["model.regularizers.sigreg=0.5", "model.regularizers.vicreg_variance=1.0",
               "model.regularizers.vicreg_covariance=0.1", "model.regularizers.inverse_dynamics=1.0",
               "model.encoder.channels=[8,8,8,8]", "model.encoder.embed_dim=8", "model.predictor.hidden_dim=16"]


class FixedWindows(Dataset):
    """BATCH seeded windows of random pixels and actions (what matters here is arithmetic, not data)."""

    def __init__(self, frames: int, action_dim: int, nan_on_odd_items: bool = False):
        generator = torch.Generator().manual_seed(0)
        self.obs = torch.randint(0, 256, (BATCH, frames, 64, 64, 3), dtype=torch.uint8, generator=generator)
        self.actions = torch.rand(BATCH, frames - 1, action_dim, generator=generator) * 2 - 1
        self.nan_on_odd_items = nan_on_odd_items

    def __len__(self):
        return BATCH

    def __getitem__(self, index):
        actions = self.actions[index]
        if self.nan_on_odd_items and index % 2:  # DistributedSampler gives odd items to rank 1 only
            actions = actions * float("nan")
        return {"obs": self.obs[index], "actions": actions, "physics": torch.zeros(5, 4),
                "position": torch.zeros(5, 2)}


class SaveGradients(pl.Callback):
    """Rank 0 writes the gradients the optimizer is about to use (after DDP's all-reduce) and the loss."""

    def __init__(self, path: str):
        self.path = path

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.is_global_zero and trainer.global_step == 0:
            gradients = {name: p.grad.clone() for name, p in pl_module.named_parameters() if p.grad is not None}
            torch.save({"gradients": gradients, "loss": trainer.callback_metrics["train/loss"].clone()}, self.path)


def model_and_data(nan_on_odd_items=False):
    cfg = model_config(*REGULARIZED)
    torch.manual_seed(0)
    model = JEPAWorldModel(cfg, (64, 64, 3), 2 * cfg.frameskip)
    data = FixedWindows(cfg.history + cfg.rollout_steps, 2 * cfg.frameskip, nan_on_odd_items)
    return model, data


def first_step_gradients(tmp_path, processes: int) -> dict:
    model, data = model_and_data()
    path = str(tmp_path / f"gradients-{processes}.pt")
    trainer = pl.Trainer(
        accelerator="cpu", devices=processes, strategy="ddp_spawn" if processes > 1 else "auto", max_steps=1,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, callbacks=[SaveGradients(path)],
    )
    trainer.fit(model, train_dataloaders=DataLoader(data, batch_size=BATCH // processes, shuffle=False))
    return torch.load(path, weights_only=True)


def test_two_ranks_with_half_batches_compute_the_loss_and_gradients_of_one_rank_with_the_whole_batch(tmp_path):
    one = first_step_gradients(tmp_path, 1)
    two = first_step_gradients(tmp_path, 2)
    assert set(two["gradients"]) == set(one["gradients"])
    scale = max(float(gradient.abs().max()) for gradient in one["gradients"].values())
    for name, gradient in one["gradients"].items():  # float32 sums in another order: differences ~1e-7
        # (relative to the largest gradient: the conv biases feed GroupNorm and get gradients of ~0)
        difference = float((two["gradients"][name] - gradient).abs().max()) / scale
        assert difference < 1e-4, (name, difference)
    # The logged loss is rank 0's: its prediction terms are of its half batch, so only the gradients
    # (averaged by DDP) must match exactly; the loss stays close.
    assert float(two["loss"]) == pytest.approx(float(one["loss"]), rel=0.2)


class WeightDigest(pl.Callback):
    """Each rank writes a digest of its weights when training ends."""

    def __init__(self, directory: str):
        self.directory = directory

    def on_train_end(self, trainer, pl_module):
        digest = hashlib.sha256()
        for tensor in pl_module.state_dict().values():
            digest.update(tensor.detach().cpu().numpy().tobytes())
        Path(self.directory, f"rank-{trainer.global_rank}.txt").write_text(digest.hexdigest())


def test_short_ddp_training_ends_with_identical_weights_on_both_ranks_and_one_checkpoint(tmp_path,
                                                                                          reacher_pixel_dataset):
    from jepa_wm.pipeline import train_from_config

    cfg = compose("train", [
        f"data.path={reacher_pixel_dataset}", f"out={tmp_path / 'run'}", "trainer.max_steps=4",
        "trainer.val_check_interval=2", "trainer.limit_val_batches=1", "trainer.enable_progress_bar=false",
        "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp_spawn", "data.batch_size=2",
        "data.num_workers=0", "wandb.mode=disabled", *REGULARIZED,
        "best.metric=val/rollout_error_ratio", "best.mode=min",  # one validation window ranks no distances
    ])
    from jepa_wm.pipeline import datamodule_from_config
    from jepa_wm.training import fit

    digests = tmp_path / "digests"
    digests.mkdir()
    run = fit(cfg, datamodule_from_config(cfg), callbacks=[WeightDigest(str(digests))])
    assert train_from_config  # the same entry point scripts use
    ranks = sorted(path.read_text() for path in digests.iterdir())
    assert len(ranks) == 2 and ranks[0] == ranks[1]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4


NAN_ON_ONE_RANK = """
import pytorch_lightning as pl, torch
from torch.utils.data import DataLoader
from tests.test_distributed import BATCH, model_and_data
model, data = model_and_data(nan_on_odd_items=True)
trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_steps=2, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     limit_val_batches=0)
trainer.fit(model, train_dataloaders=DataLoader(data, batch_size=BATCH // 2, shuffle=False))
"""


def test_a_nan_on_one_rank_stops_every_rank_instead_of_hanging(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", NAN_ON_ONE_RANK], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=240)
    assert result.returncode != 0
    assert "NonFiniteLossError" in result.stderr and "data hold NaN or inf values (actions)" in result.stderr


def launch_overrides(dataset, out):
    return [f"data.path={dataset}", f"out={out}", "trainer.max_steps=4", "trainer.val_check_interval=2",
            "trainer.limit_val_batches=1", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp",
            "data.batch_size=2", "data.num_workers=0", "trainer.enable_progress_bar=false", "wandb.mode=disabled",
            "learned_cost=none",
            "model.encoder.channels=[8,8,8,8]", "best.metric=val/rollout_error_ratio", "best.mode=min"]


@pytest.mark.slow
def test_torchrun_launches_two_processes_that_train_one_run(tmp_path, reacher_pixel_dataset):
    torchrun = Path(sys.executable).with_name("torchrun")
    result = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", str(ROOT / "scripts" / "train.py"),
                             *launch_overrides(reacher_pixel_dataset, tmp_path / "run")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("run: ") == 1  # one process reports
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


@pytest.mark.slow
def test_slurm_srun_launch_of_two_tasks_on_one_node_trains_one_run(tmp_path, reacher_pixel_dataset):
    """What `srun --ntasks-per-node=2 jepa-wm train ...` starts: two processes with SLURM's
    variables, which Lightning reads to set up DDP (emulated here: no SLURM on the test machine)."""
    processes = []
    for rank in range(2):
        env = {**os.environ, "SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_PROCID": str(rank),
               "SLURM_LOCALID": str(rank), "SLURM_NODEID": "0", "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "train",
               "SLURM_NODELIST": "localhost", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29571"}
        processes.append(subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"),
                                           *launch_overrides(reacher_pixel_dataset, tmp_path / "run")],
                                          cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [process.communicate(timeout=600) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs[0][1][-2000:]
    assert "SLURM auto-requeueing enabled" in outputs[0][1]
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
