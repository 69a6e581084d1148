"""Data-parallel training on CPU (gloo): two processes equal one with the same global batch.

The model's likelihood has a context that joins training in the second epoch, so
the runs also check that the set of trained parameters may change part-way (and
across a resume).

The family here is the diagonal Gaussian with a noiseless ``rsample`` (z = mean),
so that the loss is a deterministic function of the weights and the two runs
can be compared to float tolerance.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file
from torch.distributions import Distribution, Independent, Normal

from varfam import VAE, train
from varfam.data import Dataset
from varfam.families.gaussian import DiagonalGaussian, positive_scale
from varfam.training.distributed import Context, shard

pytestmark = pytest.mark.slow

WORLD = 2
N_TRAIN = 257  # with batch 64 the last batch has one example: rank 1 gets none
OPTIONS = dict(epochs=2, batch_size=64, precision="fp32", seed=3, lr=3e-3)


class _Noiseless(Normal):
    def rsample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        return self.loc.expand(self._extended_shape(torch.Size(sample_shape)))


class _MeanFamily(DiagonalGaussian):
    def forward(self, h: torch.Tensor) -> Distribution:
        return Independent(_Noiseless(self.loc(h), positive_scale(self.log_var(h))), 1)


def _model() -> VAE:
    """A small VAE whose likelihood's context joins training half-way (``start = 0.5``): the
    second epoch trains parameters the first left out, so the DDP wrapper must be rebuilt."""
    torch.manual_seed(21)
    model = VAE.build(data_shape=(1, 8, 8), hidden=(24,), latent_dim=3,
                      likelihood="autoregressive-bernoulli",
                      likelihood_options={"kernel": 3, "width": 4, "start": 0.5})
    family = _MeanFamily(24, 3)
    family.load_state_dict(model.family.state_dict())
    model.family = family
    return model


def _data() -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(N_TRAIN + 40, 1, 8, 8, generator=g)
    return Dataset("random", x[:N_TRAIN], x[N_TRAIN:])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, ports: list[int], out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1", RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD)
    )
    data = _data()
    # one 2-epoch run, and a 1-epoch run resumed to 2 epochs (each joins a new group)
    for port, name, epochs, resume in ((ports[0], "a", 2, False), (ports[1], "b", 1, False),
                                       (ports[2], "b", 2, True)):
        os.environ["MASTER_PORT"] = str(port)
        result = train(_model(), data, **{**OPTIONS, "epochs": epochs},
                       out=Path(out) / name, resume=resume)
        assert not torch.distributed.is_initialized()  # train() destroyed its group
        if rank != 0 and not resume:
            assert result.history == []  # only rank 0 evaluates and logs


def test_shards_cover_the_batch_and_weights_average_to_the_mean() -> None:
    for n in (1, 5, 64):
        shares = [shard(n, Context(rank=r, world_size=3)) for r in range(3)]
        covered = [i for sl, w in shares if w > 0 for i in range(n)[sl]]
        assert covered == list(range(n))
        assert sum(w for _, w in shares) == pytest.approx(3.0)


def test_two_processes_equal_one_with_the_same_global_batch(tmp_path: Path) -> None:
    ports = [_free_port() for _ in range(3)]
    mp.spawn(_worker, args=(ports, str(tmp_path)), nprocs=WORLD, join=True)

    single = train(_model(), _data(), **OPTIONS)
    expected = single.model.state_dict()
    for name in ("a", "b"):
        weights = load_file(str(tmp_path / name / "model.safetensors"))
        assert weights.keys() == expected.keys()
        for k, v in expected.items():
            torch.testing.assert_close(weights[k], v, rtol=1e-4, atol=1e-5, msg=k)
    assert expected["likelihood.context.out.weight"].abs().sum() > 0  # the context trained
    import json

    lines = [json.loads(s) for s in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 2
    for got, want in zip(lines, single.history):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-5)
        assert got["test_elbo"] == pytest.approx(want["test_elbo"], rel=1e-4)


def test_torchrun_trains_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={WORLD}", "-m", "varfam", "train", "--data", "digits",
        "--limit", "300", "--epochs", "1", "--hidden", "16", "--latent-dim", "2",
        "--precision", "fp32", "--quiet", "--out", str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("test ELBO") == 1  # only rank 0 prints
    assert len((out / "metrics.jsonl").read_text().splitlines()) >= 1
    assert (out / "model.safetensors").is_file() and (out / "samples.png").is_file()


@pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "clang++")), reason="no C++ compiler")
def test_torchrun_with_a_compiled_step_equals_the_eager_run(tmp_path: Path) -> None:
    """--compile under DDP: the compiled step of each rank gives the eager run's numbers."""
    history = {}
    for name, extra in (("eager", []), ("compiled", ["--compile"])):
        out = tmp_path / name
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={WORLD}", "-m", "varfam", "train", "--data", "digits",
            "--limit", "300", "--epochs", "2", "--hidden", "16", "--latent-dim", "2",
            "--precision", "fp32", "--quiet", "--no-report", "--out", str(out), *extra,
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        lines = (out / "metrics.jsonl").read_text().splitlines()
        history[name] = [json.loads(line) for line in lines]
    for a, b in zip(history["compiled"], history["eager"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["test_elbo"] == pytest.approx(b["test_elbo"], rel=1e-4)
