"""Precision scopes: bf16 autocast for networks, fp32 for densities, networks inside densities."""

from __future__ import annotations

import torch

from varfam.families.hierarchical import HierarchicalGaussian
from varfam.parts import autocast, fp32, network_precision


def _matmul_dtype() -> torch.dtype:
    return (torch.ones(2, 3) @ torch.ones(3, 2)).dtype


def test_fp32_suspends_autocast_and_network_precision_resumes_it() -> None:
    cpu = torch.device("cpu")
    with autocast(cpu, True):
        assert _matmul_dtype() == torch.bfloat16
        with fp32("cpu"):
            assert _matmul_dtype() == torch.float32
            with network_precision("cpu"):
                assert _matmul_dtype() == torch.bfloat16
                with fp32("cpu"):  # a density inside a network inside a density
                    assert _matmul_dtype() == torch.float32
            assert _matmul_dtype() == torch.float32
        assert _matmul_dtype() == torch.bfloat16
    # without training autocast (evaluation) both scopes leave fp32 alone
    with fp32("cpu"), network_precision("cpu"):
        assert _matmul_dtype() == torch.float32
    with network_precision("cpu"):
        assert _matmul_dtype() == torch.float32


def test_the_scope_is_released_when_a_density_raises() -> None:
    try:
        with autocast(torch.device("cpu"), True), fp32("cpu"):
            raise ValueError("boom")
    except ValueError:
        pass
    with fp32("cpu"), network_precision("cpu"):
        assert _matmul_dtype() == torch.float32


def test_hierarchical_conditional_runs_in_bf16_in_training_and_fp32_in_evaluation() -> None:
    torch.manual_seed(0)
    fam = HierarchicalGaussian(6, 4, hidden=8)
    h = torch.randn(3, 6)
    z_top = torch.randn(5, 3, 2)
    exact, _ = fam.conditional(z_top, fam.conditional.context(h))
    with autocast(torch.device("cpu"), True), fp32("cpu"):
        loc, scale = fam.conditional(z_top, fam.conditional.context(h))
    assert loc.dtype == scale.dtype == torch.float32  # a density's parameters stay fp32 tensors
    assert not torch.equal(loc, exact)  # ... computed by bf16 matrix products
    torch.testing.assert_close(loc, exact, rtol=0.05, atol=0.05)
