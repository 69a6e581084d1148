"""``--compile`` composes like the eager step (issue 26): every family × prior kind ×
gradient estimator takes one compiled step with the eager step's loss and gradients, and
a compiled run is the same run whatever was compiled before it in the process.

The step is the one ``--compile`` runs (:func:`varfam.training.step.loss_function`),
with inductor's code generation swapped for AOTAutograd's eager backend (``aot_eager``):
dynamo's trace and AOTAutograd's joint graph are where a step breaks into graphs, where
DReG's gradient hook on z is placed, and where both bugs of issue 26 lived. Inductor
compiles a model in 30 to 60 s on 2 busy cores (hours for this product); it compiles
the record's combinations in ``tests/test_compile.py`` and the runs below.

Prior kinds: the family's own (standard, categorical, uniform on the sphere, or
hierarchical), standard N(0, I) where that is another, learned, mixture of Gaussians,
VampPrior and flow. The conditional prior needs labels (``tests/test_labels_compose.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from varfam import VAE
from varfam.objectives import Elbo, Iwae, Objective
from varfam.registry import FAMILIES
from varfam.training.step import loss_function

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "clang++")),
                       reason="no C++ compiler"),
]

CPU = torch.device("cpu")
#: Small parts: one flow step, two mixture components (tracing time grows with the ops).
FAMILY_OPTIONS = {
    "gumbel": {"categories": 2}, "iaf": {"flow_steps": 1, "flow_hidden": 8},
    "realnvp": {"flow_steps": 1, "flow_hidden": 8}, "planar": {"flow_steps": 1},
    "radial": {"flow_steps": 1}, "sylvester": {"flow_steps": 1},
    "hierarchical": {"hidden": 8}, "mixture": {"components": 2},
}
PRIOR_OPTIONS = {"mog": {"components": 2}, "vamp": {"components": 2},
                 "flow": {"flow_steps": 1, "hidden": 8}}
#: Where a DReG step cannot be one graph, and is compiled with z drawn apart instead:
#: the flow prior (zuko's transforms), the iterative inverse of the planar and Sylvester
#: flows (their log q of a given z), the von Mises-Fisher rejection sampler.
NOT_ONE_GRAPH = {"planar", "sylvester", "vmf"}


def _priors(family: str) -> list[str]:
    own_is_standard = FAMILIES.get(family).default_prior == "standard"
    return ["own"] + ([] if own_is_standard else ["standard"]) + [
        "learned", "mog", "vamp", "flow"]


def _combinations() -> list[tuple[str, str, str]]:
    """DReG with every family and prior kind (its hook is what a graph break breaks); the
    ELBO, plain IWAE and STL each with every family and every prior kind, in pairs.

    The whole product (340 steps) takes about 35 minutes here (the von Mises-Fisher
    family alone 30 to 50 s a step: its rejection sampler is many small graphs); the
    three other estimators differ from DReG in the log q they score (``q.log_prob``,
    or the stop-gradient one DReG uses too) and the KL of the ELBO, not in the graph.
    """
    out = []
    for i, family in enumerate(FAMILIES.names()):
        priors = _priors(family)
        out += [(family, prior, "dreg") for prior in priors]
        out += [(family, priors[(i + j) % len(priors)], estimator)
                for j, estimator in enumerate(("elbo", "plain", "stl"))]
    for estimator in ("elbo", "plain", "stl"):  # every prior kind, with some family
        for kind in ("own", "standard", "learned", "mog", "vamp", "flow"):
            if not any(p == kind and e == estimator for _, p, e in out):
                family = next(f for f in FAMILIES.names() if kind in _priors(f))
                out.append((family, kind, estimator))
    return out


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    """Nothing compiled before, and torch.distributions' checks off as torch.compile
    leaves them (tests/test_compile.py explains why that matters)."""
    from torch.distributions import Distribution

    torch._dynamo.reset()
    Distribution.set_default_validate_args(False)
    yield
    torch._dynamo.reset()


def _model(family: str, prior: str) -> VAE:
    torch.manual_seed(0)
    args = {} if prior == "own" else {"prior": prior, "prior_options": PRIOR_OPTIONS.get(prior, {})}
    return VAE.build(data_shape=(1, 8, 8), hidden=(16,), latent_dim=4, family=family,
                     family_options=FAMILY_OPTIONS.get(family, {}), **args)


def _objective(estimator: str) -> Objective:
    return Elbo() if estimator == "elbo" else Iwae(k=2, estimator=estimator)


def _step(model: VAE, objective: Objective, compile: str | None):
    loss_of = loss_function(model, objective, None, CPU, False, compile)
    torch.manual_seed(3)
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(4)).bernoulli()
    model.zero_grad(set_to_none=True)
    loss = loss_of(x, 1.0, 0.5)
    loss.backward()
    return loss.detach(), [None if p.grad is None else p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize(("family", "prior", "estimator"), _combinations())
def test_every_family_prior_and_estimator_takes_the_eager_step_compiled(
    family: str, prior: str, estimator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, objective = _model(family, prior), _objective(estimator)
    eager_loss, eager = _step(model, objective, None)
    compiles: list[dict] = []
    compile = torch.compile

    def compile_with_aot_eager(fn, **kwargs):
        compiles.append(kwargs)
        kwargs.pop("options", None)
        return compile(fn, backend="aot_eager", **kwargs)

    monkeypatch.setattr(torch, "compile", compile_with_aot_eager)
    from torch.distributions.kl import _KL_MEMOIZE

    _KL_MEMOIZE.clear()  # as in a fresh process
    loss, gradients = _step(model, objective, "default")
    torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-5)
    for (name, _), a, b in zip(model.named_parameters(), gradients, eager, strict=True):
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    if estimator == "dreg":  # compiled whole, or with z drawn apart where it cannot be
        apart = prior == "flow" or family in NOT_ONE_GRAPH
        assert [c.get("fullgraph", False) for c in compiles] == ([True, False] if apart else [True])
        assert objective.draw_apart is False


# ---------------------------------------------------------------- a run after another run
_RUN = textwrap.dedent("""
    import json, sys, torch, varfam
    from torch.distributions import Distribution
    from varfam import VAE
    from varfam.objectives import Iwae

    out, before = sys.argv[1], sys.argv[2] == "after-another-run"
    data = varfam.load_dataset("digits").limit(192)
    small = dict(data_shape=(1, 8, 8), hidden=(16,), latent_dim=3)
    report = {}
    if before:  # another compiled run first: the standard prior and the ELBO
        torch.manual_seed(1)
        varfam.train(VAE.build(**small), data, epochs=1, batch_size=64, precision="fp32",
                     seed=1, compile=True, objective="elbo")
        report["validation_after_run"] = Distribution._validate_args
        torch.manual_seed(0)
        probe = VAE.build(**small, prior="vamp", prior_options={"components": 5})
        objective = Iwae(k=4, estimator="dreg")
        explained = torch._dynamo.explain(lambda x: objective(probe, x).loss)(
            torch.rand(16, 1, 8, 8).bernoulli())
        report["graphs_after_run"] = explained.graph_count
        torch._dynamo.reset()
    torch.manual_seed(0)
    model = VAE.build(**small, prior="vamp", prior_options={"components": 5})
    varfam.train(model, data, epochs=2, batch_size=64, precision="fp32", seed=5,
                 compile=True, objective="iwae", objective_options={"k": 4, "estimator": "dreg"})
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, out)
    print(json.dumps(report))
""")


def _run(tmp_path: Path, name: str, how: str) -> tuple[dict, dict]:
    out = tmp_path / f"{name}.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-c", _RUN, str(out), how], capture_output=True,
                          text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out), json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_compiled_run_is_the_same_alone_and_after_another_compiled_run(
    tmp_path: Path,
) -> None:
    """The same model (VampPrior, IWAE-DReG, fp32) trained compiled in a fresh process and
    after another compiled run in one process: bit-identical weights. And the earlier run
    leaves the process as torch.compile does (argument checks off), so a compiled step
    built after it is still one graph (it broke into 5 when the run put the checks back)."""
    alone, _ = _run(tmp_path, "alone", "alone")
    second, report = _run(tmp_path, "second", "after-another-run")
    assert report == {"validation_after_run": False, "graphs_after_run": 1}
    assert alone.keys() == second.keys()
    for key in alone:
        assert torch.equal(alone[key], second[key]), key
