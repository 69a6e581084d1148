"""An objective's auxiliary modules (FactorVAE's discriminator): stepped by the loop after
the model, never by the model's optimizer, checkpointed so that a resumed run is
bit-exact, left out of model.safetensors, averaged over DDP ranks."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from sklearn.datasets import load_digits

from _models import small_vae
from varfam import VAE
from varfam.data import Dataset
from varfam.objectives import FactorVae
from varfam.training import train

OPTIONS = dict(objective="factorvae", batch_size=64, seed=1, precision="fp32",
               objective_options={"gamma": 20.0, "discriminator_width": 32,
                                  "discriminator_depth": 2})


def _data() -> Dataset:
    x = torch.tensor(load_digits().images[:320], dtype=torch.float32).unsqueeze(1) / 16
    return Dataset("digits", x[:256], x[256:])


def _model() -> VAE:
    return small_vae(5)


def _meta(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


def test_two_epochs_equal_one_and_a_resumed_one_discriminator_included(tmp_path: Path) -> None:
    data = _data()
    whole = train(_model(), data, epochs=2, out=tmp_path / "a", **OPTIONS)
    train(_model(), data, epochs=1, out=tmp_path / "b", **OPTIONS)
    resumed = train(_model(), data, epochs=2, out=tmp_path / "b", resume=True, **OPTIONS)
    a = load_file(str(tmp_path / "a" / "checkpoint.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoint.safetensors"))
    assert a.keys() == b.keys()
    aux = [k for k in a if k.startswith("auxiliary")]
    assert any(k.startswith("auxiliary.net.") for k in aux)
    assert any(k.startswith("auxiliary_optim.") for k in aux)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for mine, theirs in zip(whole.objective.discriminator.state_dict().values(),
                            resumed.objective.discriminator.state_dict().values()):
        assert torch.equal(mine, theirs)
    # the discriminator trained, and its weights are the checkpoint's
    fresh = FactorVae(**OPTIONS["objective_options"]).build(_model())
    state = whole.objective.discriminator.state_dict()
    assert any(not torch.equal(v, fresh.state_dict()[k]) for k, v in state.items())
    for k, v in state.items():
        assert torch.equal(a[f"auxiliary.{k}"], v)
    assert json.loads(_meta(tmp_path / "a" / "checkpoint.safetensors")["auxiliary_param_groups"])


def test_the_model_optimizer_and_model_file_never_hold_the_discriminator(tmp_path: Path) -> None:
    model = _model()
    result = train(model, _data(), epochs=1, out=tmp_path / "r", **OPTIONS)
    n_model = len(list(model.parameters()))
    groups = json.loads(_meta(tmp_path / "r" / "checkpoint.safetensors")["param_groups"])
    assert sum(len(g["params"]) for g in groups) == n_model
    aux_groups = json.loads(
        _meta(tmp_path / "r" / "checkpoint.safetensors")["auxiliary_param_groups"])
    assert sum(len(g["params"]) for g in aux_groups) == len(
        list(result.objective.discriminator.parameters()))
    weights = load_file(str(tmp_path / "r" / "model.safetensors"))
    assert weights.keys() == model.state_dict().keys()
    assert not any("net." in k and k.startswith("aux") for k in weights)
    # the discriminator's own optimizer stepped it (Adam's step count = the batches)
    opt = result.objective.optimizer
    steps = {int(s["step"]) for s in opt.state.values()}
    assert steps == {256 // 64}


def test_the_discriminator_starts_from_the_run_seed(tmp_path: Path) -> None:
    """Two runs with one seed build the same discriminator whatever torch's RNG was before."""
    torch.manual_seed(123)
    one = train(_model(), _data(), epochs=1, **OPTIONS)
    torch.manual_seed(456)
    two = train(_model(), _data(), epochs=1, **OPTIONS)
    for a, b in zip(one.objective.discriminator.parameters(),
                    two.objective.discriminator.parameters()):
        assert torch.equal(a, b)


# ---------------------------------------------------------------- DDP (slow)
WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, ports: list[int], out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1", RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD)
    )
    for port, name, epochs, resume in ((ports[0], "a", 2, False), (ports[1], "b", 1, False),
                                       (ports[2], "b", 2, True)):
        os.environ["MASTER_PORT"] = str(port)
        result = train(_model(), _data(), **{**OPTIONS, "epochs": epochs},
                       out=Path(out) / name, resume=resume)
        state = {k: v.contiguous() for k, v in
                 result.objective.discriminator.state_dict().items()}
        save_file(state, str(Path(out) / f"{name}-rank{rank}.safetensors"))


@pytest.mark.slow
def test_ddp_keeps_the_discriminator_equal_on_every_rank_and_resumes_exactly(
    tmp_path: Path
) -> None:
    ports = [_free_port() for _ in range(3)]
    mp.spawn(_worker, args=(ports, str(tmp_path)), nprocs=WORLD, join=True)
    for name in ("a", "b"):
        r0 = load_file(str(tmp_path / f"{name}-rank0.safetensors"))
        r1 = load_file(str(tmp_path / f"{name}-rank1.safetensors"))
        for k in r0:
            assert torch.equal(r0[k], r1[k]), (name, k)  # the gradients were averaged
        saved = load_file(str(tmp_path / name / "checkpoint.safetensors"))
        for k, v in r0.items():
            assert torch.equal(saved[f"auxiliary.{k}"], v)
    a = load_file(str(tmp_path / "a" / "checkpoint.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoint.safetensors"))
    for k in a:
        if not k.startswith("rng."):
            assert torch.equal(a[k], b[k]), k
