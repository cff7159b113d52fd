"""The training loop: optimiser and schedule, mixed precision, DDP, validation, checkpoints, logs.

:class:`Trainer` is independent of where batches come from: it takes a function that returns
the batches of an epoch (``{"image": [B, C, *patch], "label": [B, 1, *patch]}``) and,
optionally, a validation function returning Dice per label. Both must be deterministic given
the epoch (the samplers seed from ``(seed, epoch, rank, index)``), which, with the RNG states
kept in every checkpoint, makes ``resume`` continue exactly where an interrupted run stopped.

Distributed training uses the standard engine: launch with ``torchrun``; each rank trains on
its own batches, gradients are averaged by DistributedDataParallel, and only rank 0 writes
checkpoints, logs and TensorBoard events.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medseg.common.progress import progress_bar
from medseg.config.run_spec import LoopConfig, OptimConfig
from medseg.io import atomic_path
from medseg.models.checkpoint import load_checkpoint, save_checkpoint
from medseg.models.precision import autocast, autocast_dtype
from medseg.training.checkpoint import rng_state, set_rng_state

log = logging.getLogger(__name__)


@dataclass
class DistributedContext:
    """Rank facts from ``torchrun``'s environment (a single process gets rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_kind: str) -> DistributedContext:
    """Join the process group when launched by ``torchrun`` (NCCL on CUDA, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    import torch.distributed as dist

    context = DistributedContext(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    if device_kind == "cuda":
        torch.cuda.set_device(context.local_rank)
    return context


def learning_rate_factor(config: OptimConfig, epoch: int, total_epochs: int) -> float:
    """Multiplier of ``config.lr`` at the start of ``epoch`` (0-based) for a run of ``total_epochs``."""
    if epoch < config.warmup_epochs:
        return (epoch + 1) / (config.warmup_epochs + 1)
    progress = min(1.0, (epoch - config.warmup_epochs) / max(1, total_epochs - config.warmup_epochs))
    if config.schedule == "poly":
        return (1.0 - progress) ** config.poly_exponent
    if config.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def build_optimizer(config: OptimConfig, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if config.name == "sgd":
        return torch.optim.SGD(
            parameters,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov,
            weight_decay=config.weight_decay,
        )
    return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)


BatchSource = Callable[[int], Iterable[dict[str, torch.Tensor]]]
Validator = Callable[[torch.nn.Module, int], dict[str, Any]]


class Trainer:
    """Runs epochs, validates, keeps the best checkpoint by an EMA of validation Dice.

    Files in ``run_dir`` (rank 0 only): ``checkpoint_latest.pt`` (every epoch),
    ``checkpoint_best.pt`` (best EMA of validation mean Dice), ``training_log.csv``
    (one row per epoch) and TensorBoard events under ``tensorboard/``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loss: torch.nn.Module,
        optim: OptimConfig,
        loop: LoopConfig,
        run_dir: str | Path,
        device: torch.device,
        config_dict: dict[str, Any] | None = None,
        distributed: DistributedContext | None = None,
        progress: bool = True,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.device = device
        self.loop = loop
        self.optim_config = optim
        self.dist = distributed or DistributedContext()
        self.config_dict = config_dict or {}
        self.progress = progress and self.dist.is_main
        self.model = model.to(device)
        self.network = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.network = DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None
            )
        if loop.compile:
            self.network = torch.compile(self.network)
        self.loss = loss.to(device)
        self.optimizer = build_optimizer(optim, self.model.parameters())
        self.amp_dtype = autocast_dtype(loop.amp, device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.epoch = 0  # epochs completed
        self.total_epochs = loop.epochs
        self.ema_dice: float | None = None
        self.best_ema = -1.0
        self._writer = None

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": "medseg-checkpoint-1",
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "total_epochs": self.total_epochs,
            "ema_dice": self.ema_dice,
            "best_ema": self.best_ema,
            "rng": rng_state(),
            "config": self.config_dict,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.ema_dice = state["ema_dice"]
        self.best_ema = float(state["best_ema"])
        set_rng_state(state["rng"])

    def resume(self, path: str | Path | None = None) -> None:
        """Continue from ``checkpoint_latest.pt`` (or ``path``); the schedule uses the current epoch total."""
        self.load_state_dict(load_checkpoint(path or self.run_dir / "checkpoint_latest.pt", map_location=self.device))
        log = self.run_dir / "training_log.csv"
        if self.dist.is_main and log.exists():  # drop rows of epochs the checkpoint does not hold
            _write_csv(log, [r for r in _read_csv(log) if int(r["epoch"]) <= self.epoch])

    # -- the loop --------------------------------------------------------------------------
    def fit(self, batches: BatchSource, validate: Validator | None = None) -> dict[str, Any]:
        """Train from ``self.epoch`` to ``self.total_epochs``; return the last epoch's log row."""
        row: dict[str, Any] = {}
        try:
            while self.epoch < self.total_epochs:
                row = self._train_epoch(batches(self.epoch))
                self.epoch += 1
                if validate is not None and (self.epoch % self.loop.val_every == 0 or self.epoch == self.total_epochs):
                    row.update(self._validate(validate))
                self._end_epoch(row)
        finally:
            if self._writer is not None:
                self._writer.close()
        return row

    def _set_lr(self) -> float:
        lr = self.optim_config.lr * learning_rate_factor(self.optim_config, self.epoch, self.total_epochs)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _train_epoch(self, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, Any]:
        lr = self._set_lr()
        self.network.train()
        iterator = iter(batches)
        losses, patches, start = [], 0, time.perf_counter()
        bar = progress_bar(
            total=self.loop.iterations_per_epoch,
            desc=f"epoch {self.epoch + 1}/{self.total_epochs}",
            unit="it",
            enabled=self.progress,
            leave=False,
        )
        for _ in range(self.loop.iterations_per_epoch):
            batch = next(iterator)
            image = batch["image"].to(self.device, non_blocking=True)
            label = batch["label"].to(self.device, non_blocking=True)
            annotated = batch.get("annotated")  # partial annotations: see medseg.training.losses
            self.optimizer.zero_grad(set_to_none=True)
            with autocast(self.amp_dtype, self.device):
                output = self.network(image)
                loss = self.loss(output.float(), label, annotated)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"epoch {self.epoch + 1}: loss is {loss.item()} (diverged; lower optim.lr)")
            self.scaler.scale(loss).backward()
            if self.loop.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.loop.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            losses.append(loss.item())
            patches += image.shape[0]
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}", patches_per_s=f"{patches / (time.perf_counter() - start):.1f}")
        bar.close()
        seconds = time.perf_counter() - start
        return {
            "epoch": self.epoch + 1,
            "train_loss": sum(losses) / len(losses),
            "lr": lr,
            "seconds": round(seconds, 3),
            "patches_per_s": round(patches * self.dist.world_size / seconds, 2),
        }

    def _validate(self, validate: Validator) -> dict[str, Any]:
        if not self.dist.is_main:
            return {}
        self.model.eval()
        result = validate(self.model, self.epoch)
        dice = {k: float(v) for k, v in result.get("dice", {}).items()}
        mean = sum(dice.values()) / len(dice) if dice else float("nan")
        alpha = self.loop.ema_alpha**self.loop.val_every
        self.ema_dice = mean if self.ema_dice is None else alpha * self.ema_dice + (1 - alpha) * mean
        row = {f"val_dice_{name}": value for name, value in dice.items()}
        row.update({"val_mean_dice": mean, "val_ema_dice": self.ema_dice})
        if "figure" in result and self.writer is not None:
            self.writer.add_figure("validation/example", result["figure"], self.epoch)
        if self.ema_dice > self.best_ema:
            self.best_ema = self.ema_dice
            row["best"] = True
            save_checkpoint(self.state_dict(), self.run_dir / "checkpoint_best.pt")
        return row

    @property
    def writer(self):
        if self._writer is None and self.dist.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        return self._writer

    def _end_epoch(self, row: dict[str, Any]) -> None:
        if self.dist.enabled:
            import torch.distributed as dist

            dist.barrier()
        if not self.dist.is_main:
            return
        _append_csv(self.run_dir / "training_log.csv", row)  # before the checkpoint: resume trims extra rows
        save_checkpoint(self.state_dict(), self.run_dir / "checkpoint_latest.pt")
        for key, value in row.items():
            if isinstance(value, (int, float)) and key != "epoch":
                self.writer.add_scalar(_tensorboard_tag(key), value, row["epoch"])
        self.writer.flush()
        shown = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float))
        log.info("epoch %d/%d: %s", row["epoch"], self.total_epochs, shown)


def _tensorboard_tag(key: str) -> str:
    if key.startswith("val_"):
        return "validation/" + key[4:]
    if key in ("lr", "seconds", "patches_per_s"):
        return "speed/" + key if key != "lr" else "train/lr"
    return "train/" + key.removeprefix("train_")


def _read_csv(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` atomically; the columns are the union over rows, in first-seen order."""
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _append_csv(path: Path, row: dict[str, Any]) -> None:
    """Append one row (the file is rewritten, so a new column simply appears)."""
    _write_csv(path, _read_csv(path) + [row])
