"""Training a JEPA world model: the losses, anti-collapse terms, DDP statistics, probe, logging and optimizer
around a ``jepa_wm.world_model.WorldModel``, as a LightningModule.

It learns embeddings of observations and predicts the embeddings of future frames from actions, without ever
reconstructing pixels (the optional decoder is an ablation). The model it trains is ``self.world_model``; its
verbs (``encode``, ``encode_target``, ``predict``, ``rollout``) are also reachable here, so this module plans
like the model it trains (the training-time evaluation does).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from omegaconf import DictConfig, OmegaConf

from jepa_wm.augment import FrameAugmentation
from jepa_wm.decoder import PixelDecoder
from jepa_wm.errors import NonFiniteLossError
from jepa_wm.heads import head_keys
from jepa_wm.learned_cost import success_targets
from jepa_wm.metrics import distance_rank_correlation, effective_rank, embedding_std, linear_probe_r2
from jepa_wm.regularizers import REGULARIZERS, token_groups
from jepa_wm.world_model import WorldModel

# Format 3: the world model's weights under world_model. (format 2, readable: the same weights at the top).
CHECKPOINT_FORMAT = "jepa-wm/3"
READABLE_FORMATS = ("jepa-wm/2", CHECKPOINT_FORMAT)
WORLD_MODEL_PARTS = ("encoder.", "predictor.", "target_encoder.")  # what format 2 kept at the top
PROBE_MAX_SAMPLES = 4096


def upgrade_state_dict(state_dict: dict) -> dict:
    """A format-2 state dict with the world model's weights at the top -> format 3 (under ``world_model.``)."""
    return {f"world_model.{key}" if key.startswith(WORLD_MODEL_PARTS) else key: value for key, value in state_dict.items()}

COORDINATE_HIDDEN = 256  # width of the head that decodes success coordinates (model.loss.coordinates)


def success_periods(env: dict | None):
    """The period of each success coordinate of the task a world model trains on (0: not an angle; see
    ``success_targets``), from the env config its data was collected with."""
    config = (env or {}).get("config")
    if not config:
        raise ValueError("model.loss.coordinates decodes the task's success coordinates, and this model was given no "
                         "task (env=); train it on a dataset (jepa-wm train data.path=...), or set model.loss.coordinates=0")
    from jepa_wm.data.envs import make_env

    task = make_env(config)
    try:
        return task.angle_periods
    finally:
        task.close()


class JEPAWorldModel(pl.LightningModule):
    """Trains a world model over observations of shape ``obs_shape`` and actions of size ``action_dim``.

    ``cfg`` is the ``model`` section of the training config (see ``configs/model/*.yaml``).
    ``env`` records the task the data came from, so a checkpoint knows what it can plan for;
    ``run_config`` is the whole training config, kept in checkpoints for the record.
    ``load_pretrained=False`` builds a timm encoder without its published weights: a checkpoint being
    loaded or resumed holds the weights itself, so rebuilding it needs no download or local file.
    """

    def __init__(self, cfg: dict | DictConfig, obs_shape, action_dim: int, env: dict | None = None,
                 run_config: dict | None = None, load_pretrained: bool = True):
        super().__init__()
        cfg = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else copy.deepcopy(dict(cfg))
        self.save_hyperparameters(
            {"cfg": cfg, "obs_shape": list(obs_shape), "action_dim": int(action_dim), "env": env or {},
             "run_config": run_config or {}, "format": CHECKPOINT_FORMAT}
        )
        self.cfg = cfg
        self.world_model = WorldModel(cfg, obs_shape, action_dim, dict(self.hparams), load_pretrained)
        weights = cfg["regularizers"]
        for name in weights:
            REGULARIZERS[name]  # an unknown term's name fails here, with the nearest one
        for name, term in REGULARIZERS.items():  # the heads of the terms that are on (e.g. inverse dynamics)
            if term.head is not None:
                setattr(self, name, term.head(self) if weights.get(name, 0) > 0 else None)
        decoder_cfg = cfg["decoder"]
        self.decoder = None
        if decoder_cfg["enabled"]:
            if cfg["obs_type"] != "pixels":
                raise ValueError("model.decoder.enabled needs pixel observations (it reconstructs frames)")
            self.decoder = PixelDecoder(self.embed_dim * self.num_tokens, self.obs_shape[0], decoder_cfg["channels"])
        self.augmentation = FrameAugmentation.from_config(cfg.get("augment"), cfg["obs_type"])
        self.coordinate_head = None
        if cfg["loss"].get("coordinates", 0.0) > 0:
            periods = success_periods(env)
            self.register_buffer("coordinate_periods", torch.as_tensor(periods, dtype=torch.float32), persistent=False)
            outputs = int(success_targets(torch.zeros(len(periods)), periods).shape[-1])
            self.coordinate_head = nn.Sequential(nn.Linear(self.embed_dim * self.num_tokens, COORDINATE_HIDDEN),
                                                 nn.GELU(), nn.Linear(COORDINATE_HIDDEN, outputs))
        self._probe_batches: list[tuple[torch.Tensor, torch.Tensor]] = []

    # ----------------------------------------------------------------- the world model it trains
    encoder = property(lambda self: self.world_model.encoder)
    predictor = property(lambda self: self.world_model.predictor)
    target_encoder = property(lambda self: self.world_model.target_encoder)
    obs_shape = property(lambda self: self.world_model.obs_shape)
    action_dim = property(lambda self: self.world_model.action_dim)
    embed_dim = property(lambda self: self.world_model.embed_dim)
    num_tokens = property(lambda self: self.world_model.num_tokens)
    history = property(lambda self: self.world_model.history)
    rollout_steps = property(lambda self: self.world_model.rollout_steps)
    max_context = property(lambda self: self.world_model.max_context)
    frameskip = property(lambda self: self.world_model.frameskip)
    def __getattr__(self, name: str):
        """The world model's heads (``learned_cost``, ``policy``, ... of ``jepa_wm.heads``) read as the module's own,
        so planning code takes either."""
        try:
            return super().__getattr__(name)  # parameters and submodules: the common case, first
        except AttributeError:
            if name in head_keys():
                return getattr(self.world_model, name)
            raise

    def encode(self, obs) -> torch.Tensor:
        return self.world_model.encode(obs)

    def encode_target(self, obs) -> torch.Tensor:
        return self.world_model.encode_target(obs)

    def predict(self, z_history: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.world_model.predict(z_history, actions)

    def rollout(self, z_history: torch.Tensor, actions: torch.Tensor, past_actions: torch.Tensor | None = None) -> torch.Tensor:
        return self.world_model.rollout(z_history, actions, past_actions)

    # ------------------------------------------------------------------------------------ losses
    def _targets(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Embeddings the predictor is trained to hit: EMA encoder's, or the online encoder's."""
        if self.target_encoder is not None:
            with torch.no_grad():
                return self.world_model.encode_target(obs)
        return z.detach() if self.cfg["stop_gradient"] else z

    def compute_losses(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """All loss terms of one batch of windows: obs (B, L, ...), actions (B, L-1, A).

        ``terms["embeddings"]`` holds the batch's (detached) embeddings (B, L, N, D) for monitoring.
        """
        obs, actions = batch["obs"], batch["actions"]
        window = self.history + self.rollout_steps
        if obs.shape[1] != window or actions.shape[1] != window - 1:
            raise ValueError(
                f"batches need windows of history + rollout_steps = {window} frames and {window - 1} actions; "
                f"got {obs.shape[1]} frames and {actions.shape[1]} actions"
            )
        weights, loss_cfg = self.cfg["regularizers"], self.cfg["loss"]
        z = self.encode(obs)  # (B, L, N, D)
        target = self._targets(obs, z)  # (B, L, N, D)
        terms: dict[str, torch.Tensor] = {}
        # The reconstruction world model baseline: embeddings shaped by the other terms (pixel
        # reconstruction) only, the predictor trained on them as fixed inputs and targets.
        predicted_from = z if self.cfg["prediction_trains_encoder"] else z.detach()
        if not self.cfg["prediction_trains_encoder"]:
            target = target.detach()

        teacher_forced = self.predictor(predicted_from[:, :-1], actions)  # (B, L-1, N, D), from true context
        terms["teacher_forcing"] = F.mse_loss(teacher_forced, target[:, 1:])
        history = self.history
        rolled = self.rollout(predicted_from[:, :history], actions[:, history - 1:], actions[:, : history - 1])  # (B, K, N, D)
        step_errors = (rolled - target[:, history:]).pow(2).mean(dim=(0, 2, 3))  # (K,)
        terms["rollout"] = step_errors.mean()
        loss = loss_cfg["teacher_forcing"] * terms["teacher_forcing"] + loss_cfg["rollout"] * terms["rollout"]

        z_all = self.global_batch(z)  # (B_all, L, N, D)
        for name, weight in weights.items():
            if weight > 0:
                terms[name] = REGULARIZERS[name].compute(self, z, z_all, actions)
                loss = loss + weight * terms[name]
        if self.coordinate_head is not None:
            # The task's success coordinates decoded from every encoding and from every open-loop prediction: the
            # predictor learns to carry what success measures through the rollout (finger-spin's spinner through contact)
            targets = success_targets(batch["position"], self.coordinate_periods)  # (B, L, T)
            encoded = self.coordinate_head(z.flatten(2))  # (B, L, T)
            predicted = self.coordinate_head(rolled.flatten(2))  # (B, K, T)
            terms["coordinates"] = F.mse_loss(encoded, targets) + F.mse_loss(predicted, targets[:, history:])
            loss = loss + loss_cfg["coordinates"] * terms["coordinates"]
        if self.decoder is not None:
            decoded_from = z.detach() if self.cfg["decoder"]["detach"] else z
            reconstruction = self.decoder(decoded_from.flatten(2))  # (B, L, H, W, 3) in [0, 1]
            terms["reconstruction"] = F.mse_loss(reconstruction, obs.float() / 255.0)
            loss = loss + self.cfg["decoder"]["weight"] * terms["reconstruction"]

        terms["loss"] = loss
        terms["step_errors"] = step_errors.detach()
        terms["copy_last_errors"] = (target[:, history - 1 : history] - target[:, history:]).pow(2).mean(dim=(0, 2, 3)).detach()
        terms["embedding_std"] = embedding_std(token_groups(z.detach()))
        terms["embeddings"] = z.detach()
        return loss, terms

    # ------------------------------------------------------------------------------ distributed
    @property
    def world_size(self) -> int:
        return self._trainer.world_size if self._trainer is not None else 1

    def global_batch(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, ...) of this process -> (world_size * B, ...) of all processes, with gradients.

        The gather's backward sums every process's gradient for this process's share; after DDP averages
        parameter gradients, a statistic of the global batch gets exactly the single-process gradient.
        """
        if self.world_size == 1:
            return z
        return self.all_gather(z, sync_grads=True).flatten(0, 1)

    def step_generator(self, device) -> torch.Generator:
        """Random numbers that every process draws alike at a step (SIGReg's directions), and that
        differ from step to step: seeded by the global step."""
        return torch.Generator(device=device).manual_seed(self.global_step)

    def process_step_generator(self, device) -> torch.Generator:
        """Random numbers of this process at this step (augmentation): a function of the run's seed, the step
        and the process, so a resumed run draws what an uninterrupted one would, and processes draw apart."""
        entropy = [torch.initial_seed() % 2**63, self.global_step, self.global_rank]  # the seed set by the run
        seed = int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]) % 2**63
        return torch.Generator(device=device).manual_seed(seed)

    def any_process(self, decision: bool) -> bool:
        """True on every process when ``decision`` is true on any (so all stop together, none hangs)."""
        if self.world_size == 1:
            return decision
        return bool(self.trainer.strategy.reduce_boolean_decision(decision, all=False))

    # ---------------------------------------------------------------------------------- training
    def training_step(self, batch, batch_index):
        if self.augmentation.active:
            obs = batch["obs"]
            batch = {**batch, "obs": self.augmentation(obs, self.process_step_generator(obs.device))}
        loss, terms = self.compute_losses(batch)
        self._stop_if_non_finite(batch, loss, terms)
        self._log_terms("train", terms, on_step=True)
        return loss

    def _stop_if_non_finite(self, batch: dict, loss: torch.Tensor, terms: dict) -> None:
        """Raise NonFiniteLossError, saying whether the data or the weights went non-finite (on every
        process, if it happened on any)."""
        if not self.any_process(not (torch.isfinite(loss) and torch.isfinite(terms["embeddings"]).all())):
            return
        where = "training" if self.training else "validation"
        bad = [key for key in ("obs", "actions") if torch.is_floating_point(batch[key]) and not torch.isfinite(batch[key]).all()]
        if bad:
            raise NonFiniteLossError(f"the {where} data hold NaN or inf values ({', '.join(bad)}) at step "
                                     f"{self.global_step}: check the dataset for NaNs")
        finite = {k: round(float(v.detach()), 4) for k, v in terms.items() if v.ndim == 0}
        raise NonFiniteLossError(
            f"the {where} loss became {float(loss)} at step {self.global_step}, the weights diverged (terms: "
            f"{finite}); lower model.optim.lr or trainer.gradient_clip_val, or check the dataset for NaNs"
        )

    def optimizer_step(self, *args, **kwargs) -> None:
        """The optimizer step, then the EMA target's: once per optimizer step, also with gradient
        accumulation (where training batches outnumber optimizer steps)."""
        super().optimizer_step(*args, **kwargs)
        self.update_target_encoder()

    def update_target_encoder(self) -> None:
        """The EMA target's step (``model.ema_momentum``), when there is one."""
        self.world_model.update_target(self.cfg["ema_momentum"])

    def validation_step(self, batch, batch_index):
        loss, terms = self.compute_losses(batch)
        embeddings = terms["embeddings"]  # (B, L, N, D)
        # Weights can diverge inside an optimizer step: stop here, before any metric chokes on NaN.
        self._stop_if_non_finite(batch, loss, terms)
        self._log_terms("val", terms, on_step=False)
        self.log("val/effective_rank", effective_rank(token_groups(embeddings[:, :1]).float()), sync_dist=True)
        if sum(len(z) for z, _ in self._probe_batches) < PROBE_MAX_SAMPLES:
            # First frame of each window only: the other frames repeat the same states.
            z = embeddings[:, 0].flatten(1)  # (B, N*D)
            self._probe_batches.append((z.float().cpu(), batch["position"][:, 0].float().cpu()))
        return loss

    def on_validation_epoch_end(self) -> None:
        """Two readings of what planning needs from the embeddings, on the validation frames.

        ``val/probe_r2``: a linear probe of the true goal coordinates (fingertip, mass position, or the
        joints success is measured on) from the embeddings. ``val/distance_rank_correlation``: Spearman's
        rank correlation, over pairs of frames, between the latent distance and the true distance of
        their goal coordinates: 1 when "closer in latent space" always means "closer in the world", which
        is what a planner minimising a latent distance to the goal relies on.
        """
        batches, self._probe_batches = self._probe_batches, []
        if self.world_size > 1:  # fit the probe on the validation frames of every process
            gathered = [None] * self.world_size
            torch.distributed.all_gather_object(gathered, batches)
            batches = [batch for process in gathered for batch in process]
        if not batches:
            return
        z = torch.cat([z for z, _ in batches])
        positions = torch.cat([p for _, p in batches])
        if len(z) >= 3:  # a few frames already give pairs to rank (the suite's best.metric)
            self.log("val/distance_rank_correlation", distance_rank_correlation(z, positions).to(self.device))
        if len(z) < 8:
            return
        # Fit on one half of the validation frames, score on the other (shuffled with a fixed seed).
        order = torch.randperm(len(z), generator=torch.Generator().manual_seed(0))
        half = len(z) // 2
        fit, score = order[:half], order[half:]
        # Every process computed the same values from the same gathered frames: no reduction needed.
        self.log("val/probe_r2", linear_probe_r2(z[fit], positions[fit], z[score], positions[score]).to(self.device))

    def _log_terms(self, stage: str, terms: dict[str, torch.Tensor], on_step: bool) -> None:
        for name, value in terms.items():
            if value.ndim == 0:
                self.log(f"{stage}/{name}", value, on_step=on_step, on_epoch=not on_step,
                         prog_bar=name == "loss", sync_dist=not on_step)
        if stage != "val":
            return
        for step, error in enumerate(terms["step_errors"], start=1):
            self.log(f"val/rollout_error_step{step}", error, sync_dist=True)
        rollout_error, copy_error = terms["step_errors"].mean(), terms["copy_last_errors"].mean()
        self.log("val/rollout_error", rollout_error, sync_dist=True)
        self.log("val/copy_last_error", copy_error, sync_dist=True)
        # Scale-free: < 1 means the predictor beats "nothing moves"; comparable across embedding scales.
        self.log("val/rollout_error_ratio", rollout_error / copy_error.clamp_min(1e-12), prog_bar=True, sync_dist=True)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Resuming applies this run's optimizer settings, not the checkpoint's; a format-2 run resumes too.

        Lightning restores the optimizer and scheduler states after this hook, from ``checkpoint``: patch
        their learning rate and weight decay to this config's, keeping the schedule's progress (the
        schedule itself is rebuilt from this config in ``configure_optimizers``).
        """
        checkpoint["state_dict"] = upgrade_state_dict(checkpoint["state_dict"])
        lr, weight_decay = float(self.cfg["optim"]["lr"]), float(self.cfg["optim"]["weight_decay"])
        for state in checkpoint.get("optimizer_states", []):
            for group in state.get("param_groups", []):
                progress = group["lr"] / group["initial_lr"] if group.get("initial_lr") else 1.0
                group.update(lr=lr * progress, initial_lr=lr, weight_decay=weight_decay)
        for state in checkpoint.get("lr_schedulers", []):
            if "base_lrs" in state:
                progress = [last / base if base else 1.0 for last, base in zip(state.get("_last_lr", state["base_lrs"]), state["base_lrs"])]
                state["base_lrs"] = [lr] * len(state["base_lrs"])
                state["_last_lr"] = [lr * factor for factor in progress]

    def configure_optimizers(self):
        optim = self.cfg["optim"]
        parameters = [p for p in self.parameters() if p.requires_grad]  # the EMA target and a frozen backbone: none
        optimizer = torch.optim.AdamW(parameters, lr=optim["lr"], weight_decay=optim["weight_decay"])
        warmup = max(1, int(optim["warmup_steps"]))
        total = self.trainer.max_steps if self.trainer is not None and self.trainer.max_steps > 0 else None

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if total is None:
                return 1.0
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return optim["min_lr_ratio"] + (1 - optim["min_lr_ratio"]) * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


