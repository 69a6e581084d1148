"""The training loop's direct Adam step computes what ``optimizer.step()`` computes, bit for
bit, and falls back to it wherever it would not (issue 20: the loop's Python should cost
nothing)."""

from __future__ import annotations

import copy

import pytest
import torch

from varfam.training.adam_step import AdamStep


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3))


def _train(model: torch.nn.Module, optimizer: torch.optim.Optimizer, direct: bool,
           steps: int = 6, frozen_until: int = 0) -> None:
    """``steps`` steps on fixed data; the last layer gets no gradient before ``frozen_until``."""
    g = torch.Generator().manual_seed(1)
    step = AdamStep(optimizer)
    for i in range(steps):
        x = torch.randn(8, 5, generator=g)
        out = model(x) if i >= frozen_until else model[1](model[0](x)).sum(-1, keepdim=True)
        loss = (out ** 2).mean()
        if direct:
            step.zero_grad()
        else:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        step.step() if direct else optimizer.step()
        if i == 2:  # the learning rate changes between steps, as the cosine schedule does
            for group in optimizer.param_groups:
                group["lr"] *= 0.5


def _same(a: torch.nn.Module, b: torch.nn.Module, opt_a: torch.optim.Optimizer,
          opt_b: torch.optim.Optimizer) -> None:
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    sa, sb = opt_a.state_dict()["state"], opt_b.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        for name in sa[k]:
            assert torch.equal(sa[k][name], sb[k][name]), (k, name)


@pytest.mark.parametrize("options", [
    {"lr": 1e-2, "fused": True},
    {"lr": 1e-2, "fused": True, "weight_decay": 0.1, "betas": (0.8, 0.99), "eps": 1e-6},
    {"lr": 1e-2, "fused": True, "amsgrad": True},  # falls back
    {"lr": 1e-2},  # not fused: falls back
])
def test_direct_step_matches_optimizer_step(options) -> None:
    a = _model()
    b = copy.deepcopy(a)
    opt_a, opt_b = torch.optim.Adam(a.parameters(), **options), torch.optim.Adam(
        b.parameters(), **options)
    _train(a, opt_a, direct=False)
    _train(b, opt_b, direct=True)
    _same(a, b, opt_a, opt_b)


def test_two_groups_and_a_part_that_joins_later_match() -> None:
    a = _model()
    b = copy.deepcopy(a)

    def adam(m):
        return torch.optim.Adam([{"params": m[0].parameters()},
                                 {"params": m[2].parameters(), "lr": 3e-2}], lr=1e-2, fused=True)

    opt_a, opt_b = adam(a), adam(b)
    _train(a, opt_a, direct=False, frozen_until=3)
    _train(b, opt_b, direct=True, frozen_until=3)
    _same(a, b, opt_a, opt_b)


def test_step_hooks_still_run() -> None:
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, fused=True)
    calls = []
    opt.register_step_post_hook(lambda *a: calls.append(1))
    _train(model, opt, direct=True, steps=3)
    assert len(calls) == 3


def test_state_loaded_in_mid_epoch_is_used() -> None:
    a = _model()
    b = copy.deepcopy(a)
    opt_a = torch.optim.Adam(a.parameters(), lr=1e-2, fused=True)
    opt_b = torch.optim.Adam(b.parameters(), lr=1e-2, fused=True)
    step = AdamStep(opt_b)
    x = torch.randn(8, 5)
    for opt, m, s in ((opt_a, a, None), (opt_b, b, step)):
        for _ in range(3):
            m.zero_grad(set_to_none=True)
            (m(x) ** 2).mean().backward()
            opt.step() if s is None else s.step()
    saved = opt_a.state_dict()  # each optimizer gets its own copy: loading shares tensors
    opt_a.load_state_dict(copy.deepcopy(saved))
    opt_b.load_state_dict(copy.deepcopy(saved))
    b.load_state_dict(a.state_dict())
    for opt, m, s in ((opt_a, a, None), (opt_b, b, step)):
        m.zero_grad(set_to_none=True)
        (m(x) ** 2).mean().backward()
        opt.step() if s is None else s.step()
    _same(a, b, opt_a, opt_b)


def test_a_torch_whose_private_kernel_differs_takes_optimizer_step(monkeypatch) -> None:
    import varfam.training.adam_step as adam_step

    monkeypatch.setattr(adam_step, "_kernel_callable", lambda: False)
    w, ref = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([w], lr=0.1, fused=True)
    ref_opt = torch.optim.Adam([ref], lr=0.1, fused=True)
    step = AdamStep(opt)
    for i in range(3):
        w.grad, ref.grad = torch.full((3,), float(i + 1)), torch.full((3,), float(i + 1))
        step.step()
        ref_opt.step()
    assert step._groups is None  # never collected: every step went through torch.optim
    assert torch.equal(w, ref)
