"""The training loop: exact resume (epoch boundary and mid-epoch), non-finite losses,
set_epoch, memory-mapped data, and batch sources. Small nets on `digits`, fp32."""

from __future__ import annotations

import os
import signal
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.distributions import Distribution

from varfam import VAE, VarfamError, train
from varfam.data import Dataset, binarize_fixed
from varfam.families.gaussian import DiagonalGaussian
from varfam.runs.checkpoint import CHECKPOINT, load_checkpoint
from varfam.runs.metrics import METRICS
from varfam.training.batches import BatchSource, is_file_backed
from varfam.training.loop import TrainingInterrupted

SMALL = dict(data_shape=(1, 8, 8), hidden=(32,), latent_dim=3)
FAST = dict(precision="fp32", batch_size=128, seed=5)


def _model(family: torch.nn.Module | None = None) -> VAE:
    torch.manual_seed(11)
    model = VAE.build(**SMALL)
    if family is not None:
        family.load_state_dict(model.family.state_dict())
        model.family = family
    return model


def _weights(model: VAE) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


class _Hooked(DiagonalGaussian):
    """The diagonal family with a ``set_epoch`` hook that records t and can act at a step."""

    def __init__(self, action=None) -> None:
        super().__init__(SMALL["hidden"][-1], SMALL["latent_dim"])
        self.seen: list[float] = []
        self.action = action
        self.poison = False

    def set_epoch(self, epoch: float) -> None:
        self.seen.append(epoch)
        if self.action is not None:
            self.action(self, len(self.seen))

    def forward(self, h: torch.Tensor) -> Distribution:
        q = super().forward(h)
        if self.poison:
            q.base_dist.loc = q.base_dist.loc * float("nan")
        return q


def test_training_lowers_the_loss_and_logs_every_epoch(digits: Dataset, tmp_path: Path) -> None:
    result = train(_model(), digits, epochs=3, out=tmp_path / "run", **FAST)
    h = result.history
    assert [r["epoch"] for r in h] == [1, 2, 3]
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    assert h[-1]["test_elbo"] > h[0]["test_elbo"]
    assert h[-1]["step"] == 3 * 5 and all(r["skipped_batches"] == 0 for r in h)
    # the reported train loss is the mean over examples of the per-batch mean losses
    lines = (tmp_path / "run" / METRICS).read_text().splitlines()
    assert len(lines) == 3
    _, info = load_checkpoint(tmp_path / "run" / CHECKPOINT, _model())
    assert info["epoch"] == 3 and len(info["history"]) == 3


def test_resume_at_an_epoch_boundary_is_exact(digits: Dataset, tmp_path: Path) -> None:
    full = train(_model(), digits, epochs=3, out=tmp_path / "a", **FAST)
    train(_model(), digits, epochs=1, out=tmp_path / "b", **FAST)
    resumed = train(_model(), digits, epochs=3, out=tmp_path / "b", resume=True, **FAST)
    _assert_same(_weights(full.model), _weights(resumed.model))
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert resumed.history[-1]["test_elbo"] == full.history[-1]["test_elbo"]
    lines = (tmp_path / "b" / METRICS).read_text().splitlines()
    assert len(lines) == 3


def test_a_signal_in_mid_epoch_saves_a_state_that_resumes_exactly(
    digits: Dataset, tmp_path: Path
) -> None:
    full = train(_model(_Hooked()), digits, epochs=3, out=tmp_path / "a", **FAST)

    def term_at_step_8(family: _Hooked, calls: int) -> None:
        if calls == 8:  # epoch 2, third batch: SIGTERM to ourselves
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted) as err:
        train(_model(_Hooked(term_at_step_8)), digits, epochs=3, out=tmp_path / "b", **FAST)
    assert err.value.exit_code == 143
    assert "in epoch 2 after 3 batches" in str(err.value) and "--resume" in str(err.value)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    _, info = load_checkpoint(tmp_path / "b" / CHECKPOINT, _model())
    assert (info["epoch"], info["batch"], info["step"]) == (1, 3, 8)

    family = _Hooked()
    resumed = train(_model(family), digits, epochs=3, out=tmp_path / "b", resume=True, **FAST)
    _assert_same(_weights(full.model), _weights(resumed.model))
    assert resumed.history[1]["train_loss"] == pytest.approx(full.history[1]["train_loss"], 1e-12)
    assert family.seen[0] == pytest.approx(1 + 3 * 128 / 600)


def test_set_epoch_receives_the_fractional_epoch(digits: Dataset) -> None:
    family = _Hooked()
    train(_model(family), digits, epochs=2, **FAST)
    n_batches = -(-600 // 128)
    assert len(family.seen) == 2 * n_batches
    expected = [e + j * 128 / 600 for e in range(2) for j in range(n_batches)]
    assert family.seen == pytest.approx(expected)


def test_a_nonfinite_loss_stops_with_its_epoch_and_step(digits: Dataset, tmp_path: Path) -> None:
    def poison_at_step_7(family: _Hooked, calls: int) -> None:
        family.poison = calls >= 7  # epoch 2, second batch (5 batches per epoch)

    with pytest.raises(VarfamError, match=r"epoch 2, step 7 \(batch 2 of 5\).*--lr") as err:
        train(_model(_Hooked(poison_at_step_7)), digits, epochs=3, out=tmp_path / "r", **FAST)
    assert "last good checkpoint" in str(err.value)
    _, info = load_checkpoint(tmp_path / "r" / CHECKPOINT, _model())
    assert info["epoch"] == 1  # the checkpoint of the last good epoch is kept


def test_skip_nonfinite_skips_and_counts_the_bad_batches(digits: Dataset, tmp_path: Path) -> None:
    def poison_steps_7_and_8(family: _Hooked, calls: int) -> None:
        family.poison = calls in (7, 8)

    result = train(_model(_Hooked(poison_steps_7_and_8)), digits, epochs=3,
                   out=tmp_path / "r", skip_nonfinite=True, **FAST)
    assert [r["skipped_batches"] for r in result.history] == [0, 2, 0]
    assert all(np.isfinite(r["train_loss"]) for r in result.history)
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


def test_resume_of_a_finished_run_refuses(digits: Dataset, tmp_path: Path) -> None:
    train(_model(), digits, epochs=1, out=tmp_path / "r", **FAST)
    with pytest.raises(VarfamError, match="already finished 1 epochs.*--epochs"):
        train(_model(), digits, epochs=1, out=tmp_path / "r", resume=True, **FAST)


def test_resume_without_a_checkpoint_says_so(digits: Dataset, tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    with pytest.raises(VarfamError, match="no checkpoint.safetensors to resume from"):
        train(_model(), digits, epochs=1, out=tmp_path / "r", resume=True, **FAST)


def test_resume_keeps_eval_lines_and_drops_lines_after_the_checkpoint(
    digits: Dataset, tmp_path: Path
) -> None:
    run = tmp_path / "r"
    train(_model(), digits, epochs=1, out=run, **FAST)
    with (run / METRICS).open("a") as f:
        f.write('{"kind": "eval", "elbo": -1.0}\n{"epoch": 2, "step": 99}\n{"epoch": 3, "st')
    train(_model(), digits, epochs=2, out=run, resume=True, **FAST)
    import json

    lines = [json.loads(s) for s in (run / METRICS).read_text().splitlines()]
    assert [r.get("epoch", r.get("kind")) for r in lines] == [1, "eval", 2]
    assert lines[2]["step"] == 10


def test_training_restores_distribution_validation(digits: Dataset) -> None:
    before = Distribution._validate_args
    train(_model(), digits.limit(100), epochs=1, **FAST)
    assert Distribution._validate_args == before


# ---------------------------------------------------------------- memory-mapped data
def _uint8_digits(digits: Dataset) -> tuple[np.ndarray, np.ndarray]:
    to_bytes = (digits.train * 255).round().to(torch.uint8).numpy()
    return to_bytes, (digits.test * 255).round().to(torch.uint8).numpy()


def test_training_from_a_memory_mapped_uint8_file_equals_in_memory(
    digits: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train_u8, test_u8 = _uint8_digits(digits)
    np.save(tmp_path / "train.npy", train_u8)
    mapped = np.load(tmp_path / "train.npy", mmap_mode="r")
    with warnings.catch_warnings():  # torch warns that the mapping is read-only
        warnings.simplefilter("ignore", UserWarning)
        assert is_file_backed(mapped) and is_file_backed(torch.from_numpy(np.asarray(mapped)))
    as_float = torch.from_numpy(train_u8).float().div_(255.0)
    test = torch.from_numpy(test_u8).float().div_(255.0)
    in_memory = train(_model(), Dataset("d", as_float, test), epochs=2, **FAST)
    assert BatchSource(mapped, torch.device("cpu"), in_memory_bytes=1000).streamed
    monkeypatch.setattr("varfam.data.mapped.IN_MEMORY_BYTES", 1000)  # stream this small file
    streamed = train(_model(), Dataset("d", mapped, test), epochs=2, **FAST)
    _assert_same(_weights(in_memory.model), _weights(streamed.model))


def test_batch_source_gathers_rows_as_float(tmp_path: Path) -> None:
    x = np.arange(6 * 4, dtype=np.uint8).reshape(6, 1, 2, 2) * 10
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    idx = torch.tensor([4, 0, 5])
    expected = torch.from_numpy(x[[4, 0, 5]]).float() / 255
    for limit in (0, 1 << 20):  # streamed, then loaded into memory
        src = BatchSource(mapped, torch.device("cpu"), in_memory_bytes=limit)
        assert src.streamed == (limit == 0)
        got = src.gather(idx)
        assert got.dtype == torch.float32 and got.shape == (3, 1, 2, 2)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
        whole = torch.cat(list(src.chunks(4)))
        torch.testing.assert_close(whole, torch.from_numpy(x).float() / 255, rtol=0, atol=0)
    assert not is_file_backed(torch.zeros(3)) and not is_file_backed(np.zeros(3))


def test_static_binarization_of_a_streamed_array_equals_binarize_fixed(tmp_path: Path) -> None:
    x = torch.rand(50, 1, 4, 4)
    np.save(tmp_path / "x.npy", x.numpy())
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    src = BatchSource(mapped, torch.device("cpu"), binarize_seed=7, in_memory_bytes=0)
    got = src.gather(torch.arange(50))
    torch.testing.assert_close(got, binarize_fixed(x, 7), rtol=0, atol=0)


def test_the_command_line_sets_skip_nonfinite() -> None:
    from varfam.cli.app import build_parser
    from varfam.cli.train import _train_config_from_args

    args = build_parser().parse_args(["train", "--skip-nonfinite"])
    assert _train_config_from_args(args).train.skip_nonfinite is True
    args = build_parser().parse_args(["train"])
    assert _train_config_from_args(args).train.skip_nonfinite is False
