"""The training loop: batches sliced from tensors in memory, bf16 autocast, atomic checkpoints.

Read top to bottom: prepare data → build objective and optimizer → (resume) →
for each epoch: shuffle, step over batches, evaluate the test ELBO, log a line
to ``metrics.jsonl``, write the checkpoint and weights.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from .checkpoint import (
    CHECKPOINT,
    load_checkpoint,
    save_checkpoint,
    save_model,
    write_text_atomic,
)
from .config import TrainConfig
from .data import Dataset
from .errors import VarfamError
from .evaluate import evaluate_elbo
from .precision import autocast, resolve_device, use_bf16
from .registry import OBJECTIVES

if TYPE_CHECKING:  # pragma: no cover
    from .model import VAE

__all__ = ["train", "TrainResult", "binarize_fixed", "METRICS"]

METRICS = "metrics.jsonl"


@dataclass
class TrainResult:
    """The trained model, one metrics dict per epoch, and the run folder (if any)."""

    model: VAE
    history: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path | None = None


def binarize_fixed(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Bernoulli-sample grey levels once with a fixed seed (static binarization, test sets)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    return torch.bernoulli(x.cpu(), generator=g).to(x.device)


def _prepare(data: Dataset, cfg: TrainConfig, device: torch.device):
    train_x, test_x = data.train, data.test
    if cfg.binarize != "none":
        # the test set is binarized once, with a fixed seed, in both modes
        test_x = binarize_fixed(test_x, cfg.seed + 1)
    if cfg.binarize == "static":
        train_x = binarize_fixed(train_x, cfg.seed)
    return train_x.to(device), test_x.to(device)


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def train(
    model: VAE,
    data: Dataset,
    config: TrainConfig | None = None,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    **overrides: Any,
) -> TrainResult:
    """Train ``model`` on ``data.train``, evaluating the test ELBO after every epoch.

    Options are the fields of :class:`TrainConfig` (``epochs``, ``batch_size``,
    ``lr``, ``objective``, ``objective_options``, ``binarize``, ``precision``,
    ``seed``, ``device`` …), given as ``config`` and/or keywords. With ``out`` the
    run folder receives ``config.json``, ``metrics.jsonl``, ``model.safetensors``
    and ``checkpoint.safetensors`` after every epoch; ``resume=True`` continues
    from that checkpoint exactly.
    """
    base = dataclasses.asdict(config) if config is not None else {}
    cfg = TrainConfig(**{**base, **overrides})
    device = resolve_device(cfg.device)
    bf16 = use_bf16(cfg.precision, device)
    model.likelihood.check_data(data.train)
    model.to(device)
    train_x, test_x = _prepare(data, cfg, device)
    n = train_x.shape[0]
    objective = OBJECTIVES.build(cfg.objective, options=cfg.objective_options)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    run_dir = Path(out) if out is not None else None
    result = TrainResult(model, [], run_dir)
    start_epoch, step, wall = 0, 0, 0.0
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            rng, info = load_checkpoint(run_dir / CHECKPOINT, model, optimizer)
            start_epoch, step, wall = info["epoch"], info["step"], info["wall_time"]
            if start_epoch >= cfg.epochs:
                raise VarfamError(
                    f"run {run_dir} already finished {start_epoch} epochs; "
                    f"pass --epochs N with N > {start_epoch} to train further"
                )
            gen.set_state(rng["data"])
            torch.set_rng_state(rng["torch"])
            # drop lines logged after the checkpoint (a kill between the two writes)
            result.history = [r for r in _read_history(run_dir) if r.get("epoch", 0) <= start_epoch]
            write_text_atomic(
                run_dir / METRICS, "".join(json.dumps(r) + "\n" for r in result.history)
            )
        else:
            (run_dir / METRICS).unlink(missing_ok=True)
        save_model(model, run_dir, cfg)

    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen).to(device)
        loss_sum = torch.zeros((), device=device)
        t0 = time.perf_counter()
        bar = tqdm(
            range(0, n, cfg.batch_size),
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=not progress,
            leave=False,
            unit="batch",
        )
        for i in bar:
            x = train_x[perm[i : i + cfg.batch_size]]
            if cfg.binarize == "dynamic":
                x = torch.bernoulli(x, generator=gen if device.type == "cpu" else None)
            with autocast(device, bf16):
                res = objective(model, x, epoch=epoch + i / n)
            loss = res.loss
            if not torch.isfinite(loss):
                raise VarfamError(
                    f"the loss became {float(loss)} at epoch {epoch + 1}, step {step + 1}; "
                    "likely a learning rate too high or data the likelihood cannot model "
                    "(try a lower --lr or --precision fp32); the last good checkpoint is kept"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * x.shape[0]
            step += 1
        seconds = time.perf_counter() - t0
        wall += seconds
        test = evaluate_elbo(model, test_x)
        record = {
            "epoch": epoch + 1,
            "step": step,
            "train_loss": float(loss_sum) / n,
            "test_elbo": test["elbo"],
            "test_reconstruction": test["reconstruction"],
            "test_kl": test["kl"],
            "epoch_seconds": seconds,
            "wall_time": wall,
            "samples_per_s": n / seconds,
        }
        result.history.append(record)
        if progress:
            tqdm.write(
                f"epoch {epoch + 1:3d}  train loss {record['train_loss']:9.3f}  "
                f"test ELBO {test['elbo']:9.3f}  {record['samples_per_s']:8.0f} ex/s"
            )
        if run_dir is not None:
            _append_jsonl(run_dir / METRICS, record)
            save_checkpoint(
                run_dir / CHECKPOINT,
                model,
                optimizer,
                {"data": gen.get_state(), "torch": torch.get_rng_state()},
                {"epoch": epoch + 1, "step": step, "wall_time": wall},
            )
            save_model(model, run_dir)
    return result


def _read_history(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
