"""The training loop on toy data: learns, resumes exactly, checkpoints atomically, DDP keeps ranks in sync."""

from __future__ import annotations

import csv
import os
import socket

import pytest
import torch

from medseg.data.planning import pool_and_kernels
from medseg.models import UNetConfig, build_unet
from medseg.models.checkpoint import load_checkpoint, save_checkpoint
from medseg.training.engine import LoopConfig, OptimConfig, Trainer, learning_rate_factor
from medseg.training.losses import LossConfig, build_loss

PATCH = (16, 16, 8)


def toy_batches(seed: int, rank: int = 0):
    """Deterministic batches per epoch: a bright box (label 1) on noise."""

    def batches(epoch: int):
        generator = torch.Generator().manual_seed(seed * 1000 + epoch * 10 + rank)
        while True:
            label = torch.zeros(2, 1, *PATCH, dtype=torch.long)
            image = torch.randn(2, 1, *PATCH, generator=generator) * 0.3
            for b in range(2):
                i, j = torch.randint(0, 8, (2,), generator=generator).tolist()
                label[b, 0, i : i + 8, j : j + 8, 2:6] = 1
            image = image + label.float()
            yield {"image": image, "label": label}

    return batches


def make_trainer(run_dir, epochs=4, seed=0, distributed=None, amp="auto"):
    torch.manual_seed(seed)
    strides, kernels = pool_and_kernels((1.0, 1.0, 2.0), PATCH, max_stages=3)
    model = build_unet(UNetConfig(base_channels=4), 1, 2, strides, kernels)
    loop = LoopConfig(epochs=epochs, iterations_per_epoch=3, val_every=2, seed=seed, amp=amp)
    return Trainer(
        model,
        build_loss(LossConfig(), 2),
        OptimConfig(lr=0.02),
        loop,
        run_dir,
        torch.device("cpu"),
        config_dict={"note": "toy"},
        distributed=distributed,
        progress=False,
    )


def box_dice(model, epoch):
    batch = next(toy_batches(99)(0))
    with torch.no_grad():
        prediction = model(batch["image"]).argmax(1, keepdim=True)
    inter = ((prediction == 1) & (batch["label"] == 1)).sum().item()
    dice = 2 * inter / ((prediction == 1).sum().item() + (batch["label"] == 1).sum().item())
    return {"dice": {"box": dice}}


def test_loss_falls_and_files_are_written(tmp_path):
    trainer = make_trainer(tmp_path, epochs=6)
    trainer.fit(toy_batches(0), box_dice)
    with (tmp_path / "training_log.csv").open(encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert "val_dice_box" in rows[1] and rows[1]["val_dice_box"] != ""
    assert (tmp_path / "checkpoint_best.pt").exists() and any((tmp_path / "tensorboard").iterdir())
    state = load_checkpoint(tmp_path / "checkpoint_latest.pt")  # weights_only=True
    assert state["epoch"] == 6 and state["config"] == {"note": "toy"}


@pytest.mark.parametrize("amp", ["none", "bf16"])
def test_cpu_trains_in_float32_and_in_bf16(tmp_path, amp):
    """bf16 autocast on CPU: the loss falls as in float32, and the weights stay float32."""
    trainer = make_trainer(tmp_path, epochs=6, amp=amp)
    assert trainer.amp_dtype == (None if amp == "none" else torch.bfloat16)
    last = trainer.fit(toy_batches(0))
    with (tmp_path / "training_log.csv").open(encoding="utf-8") as stream:
        first = next(csv.DictReader(stream))
    assert last["train_loss"] < 0.8 * float(first["train_loss"])
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())


def test_resume_continues_exactly(tmp_path):
    straight = make_trainer(tmp_path / "straight", epochs=4)
    straight.fit(toy_batches(0))

    def killed_in_epoch_3(epoch):
        if epoch == 2:
            raise KeyboardInterrupt  # the process dies during the third epoch
        return toy_batches(0)(epoch)

    interrupted = make_trainer(tmp_path / "resumed", epochs=4)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(killed_in_epoch_3)
    torch.manual_seed(12345)  # disturb global RNG: resume must restore it
    resumed = make_trainer(tmp_path / "resumed", epochs=4, seed=7)  # different init, overwritten by resume
    resumed.resume()
    assert resumed.epoch == 2
    resumed.fit(toy_batches(0))
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with (tmp_path / "resumed" / "training_log.csv").open(encoding="utf-8") as stream:
        assert [int(r["epoch"]) for r in csv.DictReader(stream)] == [1, 2, 3, 4]


def test_extending_a_finished_run(tmp_path):
    trainer = make_trainer(tmp_path, epochs=2)
    trainer.fit(toy_batches(0))
    more = make_trainer(tmp_path, epochs=3)
    more.resume()
    more.fit(toy_batches(0))
    assert load_checkpoint(tmp_path / "checkpoint_latest.pt")["epoch"] == 3


def test_schedules():
    poly = OptimConfig(schedule="poly")
    assert learning_rate_factor(poly, 0, 10) == 1.0
    assert learning_rate_factor(poly, 5, 10) == pytest.approx(0.5**0.9)
    cosine = OptimConfig(schedule="cosine", warmup_epochs=2)
    assert learning_rate_factor(cosine, 0, 12) == pytest.approx(1 / 3)
    assert learning_rate_factor(cosine, 7, 12) == pytest.approx(0.5)


def test_atomic_checkpoint_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint({"epoch": 1, "w": torch.ones(3)}, path)

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", explode)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"epoch": 2}, path)
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_checkpoint_gets_the_usual_permissions_not_mkstemps_0600(tmp_path):
    umask = os.umask(0o027)
    try:
        path = save_checkpoint({"epoch": 1}, tmp_path / "ckpt.pt")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o640


def _ddp_worker(rank: int, world_size: int, port: int, run_dir: str, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank)
    )
    import torch.distributed as dist

    from medseg.training.engine import init_distributed

    torch.set_num_threads(1)
    context = init_distributed("cpu")
    trainer = make_trainer(run_dir, epochs=2, distributed=context)
    trainer.fit(toy_batches(0, rank=rank))  # each rank sees different data
    torch.save(trainer.model.state_dict(), f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_ddp_keeps_ranks_identical(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_worker, args=(2, port, str(tmp_path / "run"), str(tmp_path)), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    initial = make_trainer(tmp_path / "unused").model.state_dict()
    for name in rank0:
        torch.testing.assert_close(rank0[name], rank1[name], rtol=0, atol=0)
    assert any(not torch.equal(rank0[n], initial[n]) for n in rank0)  # and they did train
    assert (tmp_path / "run" / "checkpoint_latest.pt").exists()  # written by rank 0 only
