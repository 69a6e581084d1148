"""Labels as an input of the parts, and M2's bound: the mathematics, on tiny models.

The M2 combination is checked exactly with an objective whose per-example bound is a
known function of (x, y): the sum over hidden labels, its weights and the
classification term are then plain arithmetic. The parts are checked on real
(untrained) networks: every architecture reads y in the family's heads and in the
decoder, the conditional prior is a Gaussian per class, and the hidden labels of
:func:`varfam.data.labels.hide_labels` are balanced, seeded and never read past the
last one kept.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

import varfam
from varfam.data.labels import class_names, hide_labels, labelled_indices
from varfam.errors import VarfamError
from varfam.evaluation.bounds import importance_sampling
from varfam.nets.conditioning import LabelCondition
from varfam.objectives import Elbo, Iwae, Objective, Terms, kl_term
from varfam.objectives.labelled import default_alpha, labelled_objective

C = 3


def build(**kw) -> varfam.VAE:
    opts = dict(data_shape=(1, 8, 8), latent_dim=2, hidden=(16,), condition="label",
                n_classes=C, classes=("cat", "dog", "owl"))
    return varfam.VAE.build(**{**opts, **kw})


# ---------------------------------------------------------------- the parts read y
@pytest.mark.parametrize("arch", ["mlp", "gated-mlp", "conv"])
def test_every_architecture_reads_y_in_the_family_and_the_decoder(arch: str) -> None:
    model = build(arch=arch)
    x = torch.rand(4, 1, 8, 8)
    z = torch.randn(4, 2)
    a, b = torch.tensor([0, 0, 1, 2]), torch.tensor([1, 2, 0, 0])
    assert model.encode(x, a).batch_shape == (4,) and model.decode(z, a).batch_shape == (4,)
    assert not torch.allclose(model.encode_location(x, a), model.encode_location(x, b))
    assert not torch.allclose(model.decode(z, a).mean, model.decode(z, b).mean)
    # the encoder network is the unconditioned one; the heads and the decoder are wider
    plain = varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(16,), arch=arch)
    assert model.encoder.feature_dim == plain.encoder.feature_dim
    assert model.family.feature_dim == plain.family.feature_dim + C
    # a soft label halfway between two classes is a valid input of the decoder
    half = torch.full((4, C), 0.0)
    half[:, :2] = 0.5
    assert torch.isfinite(model.decode(z, half).mean).all()


def test_labels_by_index_name_list_or_tensor_and_their_errors() -> None:
    cond = LabelCondition(C, ("cat", "dog", "owl"))
    assert cond.labels("owl", 2).tolist() == [2, 2]
    assert cond.labels(["dog", 0, "2"]).tolist() == [1, 0, 2]
    assert cond.labels(torch.tensor([0, -1])).tolist() == [0, -1]
    for bad, words in [("cow", "unknown label 'cow'"), (3, "not a class"),
                       (torch.tensor([5]), "not a class"), (torch.tensor([0.5]), "integers")]:
        with pytest.raises(VarfamError, match=words):
            cond.labels(bad, 1)
    with pytest.raises(VarfamError, match="at least 2 classes"):
        LabelCondition(1)
    model = build()
    with pytest.raises(VarfamError, match="--label CLASS on the command line or y= in Python"):
        model.decode(torch.zeros(2, 2))
    with pytest.raises(VarfamError, match="no classifier"):
        model.classify(torch.rand(2, 1, 8, 8))
    with pytest.raises(VarfamError, match="needs a model conditioned"):
        varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(16,), prior="conditional")


def test_sampling_a_class_and_the_conditional_prior() -> None:
    model = build(prior="conditional")
    with torch.no_grad():
        model.prior.loc.copy_(torch.tensor([[-5.0, 0.0], [0.0, 0.0], [5.0, 0.0]]))
    p = model.prior_distribution([2, 0])
    assert p.batch_shape == (2,) and torch.equal(p.mean, model.prior.loc[[2, 0]])
    # a Gaussian per class keeps the closed-form KL of Gaussian families
    q = model.encode(torch.rand(2, 1, 8, 8), [2, 0])
    z = q.rsample((20000,))
    mc = (q.log_prob(z) - p.log_prob(z)).mean(0)
    assert torch.allclose(kl_term(q, p, q.rsample()), mc, rtol=0.02)
    # without a label the prior is the uniform mixture over the classes
    mix = model.prior_distribution()
    zz = torch.randn(5, 2)
    want = torch.logsumexp(model.prior_distribution([0, 1, 2]).log_prob(zz[:, None]), 1)
    assert torch.allclose(mix.log_prob(zz), want - math.log(C), atol=1e-5)
    torch.manual_seed(0)
    assert model.sample(6, "owl").shape == (6, 1, 8, 8)
    assert model.sample(3, [0, 1, 2]).shape == (3, 1, 8, 8)
    with pytest.raises(VarfamError, match="2 labels were given for 3"):
        model.sample(3, [0, 1])


def test_a_vamp_prior_in_a_conditioned_model_is_a_mixture_over_every_class() -> None:
    model = build(prior="vamp", prior_options={"components": 6})
    seen = []
    original = model.encode

    def spy(x, y=None):
        seen.append(None if y is None else y.tolist())
        return original(x, y)

    model.encode = spy  # type: ignore[method-assign]
    p = model.prior_distribution()
    assert p.batch_shape == () and seen == [[0, 1, 2, 0, 1, 2]]


# ---------------------------------------------------------------- M2, exactly
class Known(Objective):
    """A bound known in closed form: L(x, y) = -(mean(x) - y)² - 1, the same for every term."""

    def terms(self, model, x, epoch=0.0, y=None):
        value = -(x.flatten(1).mean(1) * 10 - y.float()) ** 2 - 1.0
        return Terms(value, value, value + 0.5, torch.full_like(value, 0.5))


def m2_model() -> varfam.VAE:
    torch.manual_seed(0)
    return build(classifier=True)


def test_hidden_labels_are_summed_out_exactly() -> None:
    model = m2_model()
    x = torch.rand(5, 1, 8, 8)
    y = torch.tensor([1, -1, 0, -1, -1])
    res = labelled_objective(Known().terms, model, x, y, alpha=0.0, labelled_share=0.5)
    log_q = model.classify(x).logits
    q = log_q.exp()
    every = torch.stack([Known().terms(model, x, y=torch.full((5,), c)).elbo for c in range(C)], 1)
    u = (q * (every - math.log(C))).sum(1) - (q * log_q).sum(1)  # Σ q (L + log p(y)) + H
    hidden = y < 0
    assert torch.allclose(res.elbo[hidden], u[hidden], atol=1e-5)
    assert torch.allclose(res.elbo[~hidden], every[~hidden].gather(1, y[~hidden, None])[:, 0])
    assert torch.allclose(res.reconstruction - res.kl, res.elbo, atol=1e-5)
    # U ≤ log Σ_y p(y) exp L(x, y), with equality at q(y|x) ∝ exp L(x, y)
    bound = torch.logsumexp(every, 1) - math.log(C)
    assert (u <= bound + 1e-5).all()
    with torch.no_grad():
        model.condition.classifier.head.weight.zero_()
        model.condition.classifier.head.bias.zero_()
    posterior = torch.softmax(every, 1)
    q2 = posterior
    u2 = (q2 * (every - math.log(C))).sum(1) - (q2 * q2.log()).sum(1)
    assert torch.allclose(u2, bound, atol=1e-5)
    # the loss: the data's share weighs the labelled mean against the unlabelled one
    loss = -(0.5 * every[~hidden].gather(1, y[~hidden, None]).mean() + 0.5 * u[hidden].mean())
    assert torch.allclose(res.loss, loss, atol=1e-5)


def test_alpha_is_read_against_the_data_not_the_batch() -> None:
    model = m2_model()
    x = torch.rand(4, 1, 8, 8)
    y = torch.tensor([2, -1, -1, 0])
    log_q = model.classify(x).logits
    cls = log_q[[0, 3], [2, 0]]
    plain = labelled_objective(Known().terms, model, x, y, alpha=0.0, labelled_share=0.01)
    paper = labelled_objective(Known().terms, model, x, y, labelled_share=0.01)
    assert default_alpha(0.01) == pytest.approx(10.0)  # 0.1 · N / N_l with N_l / N = 1 %
    # the classification term adds share · α · mean log q = 0.1 · mean log q per example
    assert torch.allclose(paper.loss, plain.loss - 0.1 * cls.mean(), atol=1e-5)
    # without the data's share the batch stands for the data: 2 of 4 labelled
    batch = labelled_objective(Known().terms, model, x, y)
    half = labelled_objective(Known().terms, model, x, y, labelled_share=0.5)
    assert torch.allclose(batch.loss, half.loss)


def test_no_nan_when_the_classifier_is_certain() -> None:
    model = m2_model()
    with torch.no_grad():  # q(y|x) rounds to exactly one class in float32
        model.condition.classifier.head.bias.copy_(torch.tensor([400.0, -400.0, 0.0]))
    x = torch.rand(6, 1, 8, 8).round()
    y = torch.tensor([1, -1, -1, 2, -1, 0])
    for objective in (Elbo(), Iwae(k=3, estimator="dreg")):
        res = objective(model, x, y=y)
        model.zero_grad()
        res.loss.backward()
        assert torch.isfinite(res.loss) and torch.isfinite(res.elbo).all()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_every_part_gets_gradients_from_a_mixed_batch() -> None:
    model = build(classifier=True, prior="conditional")
    x = torch.rand(6, 1, 8, 8).round()
    y = torch.tensor([1, -1, -1, 2, -1, 0])
    Elbo()(model, x, y=y).loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing, missing


def test_the_conditional_importance_sampled_bound_is_above_the_elbo() -> None:
    torch.manual_seed(1)
    model = build(likelihood="gaussian")
    x, y = torch.rand(8, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    res = importance_sampling(model, x, 200, y=y, seed=0)
    elbo = torch.stack([Elbo()(model, x, y=y).elbo for _ in range(50)]).mean(0)
    assert (res.log_likelihood >= res.elbo).all()
    assert (res.log_likelihood.float() > elbo - 1.0).all()
    other = importance_sampling(model, x, 200, y=(y + 1) % C, seed=0)
    assert not torch.allclose(res.log_likelihood, other.log_likelihood)


# ---------------------------------------------------------------- hiding labels
def test_hidden_labels_are_balanced_seeded_and_never_read_after_the_last_kept() -> None:
    y = torch.arange(300) % 10
    kept = hide_labels(y, 25, seed=4, n_classes=10)
    counts = torch.bincount(kept[kept >= 0], minlength=10)
    assert int(counts.sum()) == 25 and int(counts.max() - counts.min()) <= 1
    assert ((kept == y) | (kept == -1)).all()
    assert torch.equal(kept, hide_labels(y, 25, seed=4, n_classes=10))
    assert not torch.equal(kept, hide_labels(y, 25, seed=5, n_classes=10))
    # every label after the walk's last kept example may change: nothing else does
    order = torch.randperm(300, generator=torch.Generator().manual_seed(4))
    chosen = labelled_indices(y, 25, seed=4, n_classes=10)
    stop = max(int((order == i).nonzero()) for i in chosen)
    changed = y.clone()
    changed[order[stop + 1 :]] = (changed[order[stop + 1 :]] + 3) % 10
    assert torch.equal(hide_labels(changed, 25, seed=4, n_classes=10)[chosen], kept[chosen])
    assert torch.equal(hide_labels(changed, 25, seed=4, n_classes=10) >= 0, kept >= 0)
    # validation rows (the last ones) are never among the labelled
    assert (hide_labels(y, 25, seed=4, n_classes=10, among=200)[200:] == -1).all()
    with pytest.raises(VarfamError, match="at least the number of classes"):
        hide_labels(y, 5, seed=0, n_classes=10)
    with pytest.raises(VarfamError, match="too few"):
        hide_labels(torch.zeros(50, dtype=torch.long), 10, seed=0, n_classes=2)


def test_class_names_of_the_data() -> None:
    ds = varfam.load_dataset("digits")
    assert class_names(ds) == tuple(str(d) for d in range(10))
    bare = varfam.Dataset("toy", ds.train[:4], ds.test[:2], torch.tensor([0, 2, 1, 0]),
                          torch.tensor([1, 1]))
    assert class_names(bare) == ("0", "1", "2")
    with pytest.raises(VarfamError, match="has no labels"):
        class_names(varfam.Dataset("toy", ds.train[:4], ds.test[:2]))


def test_labelled_weight_picks_the_batch_or_the_data_share(tmp_path) -> None:
    import json

    from varfam.config import DataConfig, RunConfig, TrainConfig
    from varfam.objectives.labelled import objective_options

    labels = torch.tensor([0, 1] + [-1] * 18)  # 10 % labelled
    assert objective_options(labels) == {"alpha": pytest.approx(1.0)}  # the batch's own share
    assert objective_options(labels, 3.0, "data") == {"alpha": 3.0, "labelled_share": 0.1}
    with pytest.raises(VarfamError, match="labelled_weight must be batch or data"):
        objective_options(labels, None, "both")
    with pytest.raises(VarfamError, match="add --labelled N"):
        RunConfig(train=TrainConfig(labelled_weight="data"))
    # a run written before the option weighed by the data: it resumes as it began
    old = RunConfig(data=DataConfig(labelled=10)).to_dict()
    del old["train"]["labelled_weight"]
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert RunConfig.read(tmp_path / "config.json").train.labelled_weight == "data"
    plain = RunConfig().to_dict()
    del plain["train"]["labelled_weight"]
    (tmp_path / "config.json").write_text(json.dumps(plain))
    assert RunConfig.read(tmp_path / "config.json").train.labelled_weight == "batch"


@pytest.mark.parametrize("objective", [Elbo(), Iwae(k=3)])
def test_each_image_is_encoded_once_with_the_same_bound_and_gradients(
    objective, monkeypatch
) -> None:
    """M2 scores an unlabelled image under every class; the encoder network reads it once
    (``VAE.repeated_rows``) and the bound and every gradient are those of C passes."""
    import contextlib

    x = torch.rand(6, 1, 8, 8)
    y = torch.tensor([1, -1, 0, -1, -1, 2])
    calls: list[int] = []

    def run(shared: bool) -> tuple[Tensor, list[Tensor]]:
        model = m2_model()
        model.encoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
        if not shared:
            monkeypatch.setattr(model, "repeated_rows", lambda *a: contextlib.nullcontext())
        torch.manual_seed(1)
        loss = labelled_objective(objective.terms, model, x, y, alpha=1.0).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    loss, grads = run(shared=True)
    assert calls == [3 + 3]  # 3 labelled + 3 unlabelled images, not 3 + 3 · C rows
    calls.clear()
    loss_c, grads_c = run(shared=False)
    assert calls == [3 + 3 * C]
    assert torch.allclose(loss, loss_c, atol=1e-5)
    assert len(grads) == len(grads_c)
    assert all(torch.allclose(g, h, atol=1e-5) for g, h in zip(grads, grads_c))


def test_repeated_rows_leaves_other_tensors_and_refuses_a_wrong_layout() -> None:
    model = m2_model()
    x = torch.rand(4, 1, 8, 8)
    rows = torch.cat([x, x[2:], x[2:]])
    with model.repeated_rows(rows, 4, 2):
        assert torch.equal(model.features(rows, torch.zeros(8, dtype=torch.long))[:, :-C],
                           model.encoder(rows).float())
        other = rows.clone()  # not the batch named: encoded row by row, as usual
        assert torch.equal(model._encoder_rows(other), model.encoder(other))
    assert model._repeated is None
    with pytest.raises(VarfamError, match="not 4 distinct rows and copies of the last 3"):
        with model.repeated_rows(rows, 4, 3):
            pass
