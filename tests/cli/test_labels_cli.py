"""Labels end to end through the command line (in-process): conditional sampling that a
classifier of real digits reads as the class asked for, semi-supervised training that
beats its classifier trained on the labelled examples alone, the label mask, a
labelled folder of images, and the one-line errors.

Thresholds were measured on this machine with these settings (seed 0): samples of
``--label 3`` read as 3 by a logistic regression on real digits: 100 % (asserted ≥ 90 %);
M2 with 50 labels (α = 30, 20 epochs): 90.3 % test accuracy against 86.3 % for the
labelled-only classifier (asserted: a 2-point lead; seeds 1 and 2 gave +2.3 and +5.7).
The paper's α = 0.1 · 1497 / 50 = 3 is small for a data set this size: with it M2
only matched the labelled-only classifier here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import varfam.objectives.base as objective_base
from varfam.cli import main
from varfam.data import load_dataset
from varfam.data.base import SPLIT_SEED, held_out_count, split_indices
from varfam.data.labels import labelled_indices
from varfam.evaluation.classify import accuracy, predict
from varfam.runs.folder import open_run
from varfam.training.labels import fit_classifier

SMALL = ["--hidden", "64", "--latent-dim", "4", "--batch-size", "64", "--lr", "3e-3",
         "--quiet", "--no-report"]


pytestmark = pytest.mark.usefixtures("one_thread")


def one_line_error(capsys: pytest.CaptureFixture, argv: list[str], words: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1, err


# ---------------------------------------------------------------- conditional VAE
def test_sampling_a_class_of_digits_gives_that_digit(tmp_path: Path, capsys) -> None:
    from sklearn.linear_model import LogisticRegression

    run = tmp_path / "cvae"
    assert main(["train", "--data", "digits", "--condition", "label", "--epochs", "10",
                 "--out", str(run), *SMALL]) == 0
    cfg = json.loads((run / "config.json").read_text())["model"]
    assert cfg["condition"] == "label" and cfg["n_classes"] == 10
    assert cfg["classes"] == [str(d) for d in range(10)]
    assert main(["sample", str(run), "--label", "3", "-n", "200",
                 "-o", str(tmp_path / "3.npy")]) == 0
    samples = np.load(tmp_path / "3.npy")
    ds = load_dataset("digits")
    real = LogisticRegression(max_iter=2000).fit(ds.train.flatten(1).numpy(), ds.train_labels)
    assert real.score(ds.test.flatten(1).numpy(), ds.test_labels) > 0.9
    threes = float((real.predict(samples.reshape(len(samples), -1)) == 3).mean())
    assert threes >= 0.9, threes
    # one named row per class, and the labels of the data for the other pictures
    grid = tmp_path / "all.png"
    assert main(["sample", str(run), "--label", "all", "-n", "4", "-o", str(grid)]) == 0
    with Image.open(grid) as im:  # 8×8 digits shown 7× larger, 2-pixel gaps: 70 px a row
        assert im.height == 10 * 70 + 14 and im.width > 4 * 70 + 14  # and names on the left
    assert main(["sample", str(run), "--label", "all", "-n", "3", "-o",
                 str(tmp_path / "all.npy")]) == 0
    assert np.load(tmp_path / "all.npy").shape == (30, 1, 8, 8)
    for argv in (["reconstruct", str(run), "-o", str(tmp_path / "r.png")],
                 ["interpolate", str(run), "-o", str(tmp_path / "i.png")],
                 ["encode", str(run), "-o", str(tmp_path / "z.npz")],
                 ["decode", str(run), "--latents", str(tmp_path / "z.npz"), "--label", "7",
                  "-o", str(tmp_path / "d.png")]):
        assert main(argv) == 0, argv
    # log p(x|y), importance sampled with q(z|x, y)
    capsys.readouterr()
    assert main(["eval", str(run), "--iw", "10", "--limit", "50", "--json", "--no-record"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["conditional"] is True and m["log_likelihood"] >= m["elbo"] - 1
    assert m["accuracy"] is None
    one_line_error(capsys, ["sample", str(run), "--label", "cats", "-o", str(grid)],
                   "unknown label 'cats'")
    one_line_error(capsys, ["decode", str(run), "--latents", str(tmp_path / "z.npz"),
                            "-o", str(grid)], "--label CLASS")
    one_line_error(capsys, ["classify", str(run), "-o", str(tmp_path / "p.npy")],
                   "no classifier")


# ---------------------------------------------------------------- semi-supervised M2
def test_fifty_labels_of_digits_beat_a_classifier_of_those_fifty(tmp_path: Path, capsys) -> None:
    run = tmp_path / "m2"
    # the paper's weighing: on this small set it beat the batch's (90.3 % against 89.3 %
    # at seed 0, and by a wider margin at seeds 1 and 2; docs/results.md, Labels)
    assert main(["train", "--data", "digits", "--labelled", "50", "--alpha", "30",
                 "--labelled-weight", "data",
                 "--labelled-ratio", "0.25", "--epochs", "20", "--seed", "0",
                 "--out", str(run), *SMALL, "--hidden", "128", "--latent-dim", "8"]) == 0
    model, cfg = open_run(run)
    assert cfg.model.classifier and cfg.data.labelled == 50
    ds = load_dataset("digits")
    m2 = accuracy(model, ds.test, ds.test_labels)
    kept = labelled_indices(ds.train_labels, 50, 0, 10)
    alone = fit_classifier(cfg.model, ds.train[kept], ds.train_labels[kept], seed=0)
    baseline = float((predict_with(alone, ds.test) == ds.test_labels).double().mean())
    assert m2 > baseline + 0.02, (m2, baseline)
    history = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
    assert history[-1]["test_accuracy"] == pytest.approx(m2)
    # varfam classify writes q(y|x)'s most probable class, with names in the CSV
    capsys.readouterr()
    assert main(["classify", str(run), "-o", str(tmp_path / "p.npy")]) == 0
    assert f"accuracy {m2:.4f}" in capsys.readouterr().out
    in_file_order = ds.test[torch.argsort(ds.test_index)]  # rows keep the source's order
    assert np.array_equal(np.load(tmp_path / "p.npy"), predict(model, in_file_order).numpy())
    assert main(["classify", str(run), "--split", "all", "-o", str(tmp_path / "p.csv")]) == 0
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0] == "index,label,class,probability" and len(rows) == 1 + 1797
    # eval: the test accuracy and log p(x) with y summed out
    capsys.readouterr()
    assert main(["eval", str(run), "--iw", "5", "--limit", "40", "--json", "--no-record"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["accuracy"] == pytest.approx(accuracy(model, ds.test[:40], ds.test_labels[:40]))
    assert m["marginal_log_likelihood"] is not None


def predict_with(classifier: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return classifier(x).logits.argmax(-1)


def test_hidden_labels_never_reach_training(tmp_path: Path, monkeypatch) -> None:
    """The loop sees -1 for every hidden label, and changing every label the selection
    never read leaves the trained weights bit for bit the same."""
    ds = load_dataset("digits")
    x = np.concatenate([ds.train.numpy(), ds.test.numpy()])[:600, 0]
    y = np.concatenate([ds.train_labels.numpy(), ds.test_labels.numpy()])[:600]
    n = len(y)
    tr, _ = split_indices(n, held_out_count(n), SPLIT_SEED)
    train_labels = torch.as_tensor(y[tr.numpy()])
    kept = labelled_indices(train_labels, 20, 0, 10)
    order = torch.randperm(len(tr), generator=torch.Generator().manual_seed(0))
    stop = max(int((order == i).nonzero()) for i in kept)
    unread = order[stop + 1 :]
    assert len(unread) > len(tr) // 2
    changed = y.copy()
    changed[tr[unread].numpy()] = (changed[tr[unread].numpy()] + 1) % 10
    np.savez(tmp_path / "a.npz", x=x, labels=y)
    np.savez(tmp_path / "b.npz", x=x, labels=changed)

    seen: list[torch.Tensor] = []
    original = objective_base.labelled_objective

    def spy(terms_of, model, xb, yb, *args, **kw):
        if model.training:  # a training step (evaluation runs in eval mode)
            seen.append(yb.clone())
        return original(terms_of, model, xb, yb, *args, **kw)

    monkeypatch.setattr(objective_base, "labelled_objective", spy)
    weights = []
    for name in ("a", "b"):
        run = tmp_path / f"run-{name}"
        assert main(["train", "--data", str(tmp_path / f"{name}.npz"), "--labelled", "20",
                     "--epochs", "2", "--out", str(run), *SMALL]) == 0
        weights.append(load_file(str(run / "model.safetensors")))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    every = torch.cat(seen)
    known = every[every >= 0]
    assert len(seen) > 4 and all((b >= 0).any() and (b < 0).any() for b in seen)
    assert set(known.tolist()) <= set(train_labels[kept].tolist())
    # per batch, the labelled rows are some of the 20 kept examples' labels (cycled)
    assert int((every >= 0).sum()) < len(every) // 2


# ---------------------------------------------------------------- a labelled folder
def test_a_labelled_folder_of_images_end_to_end(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "pets"
    for name, rows in (("cats", slice(0, 4)), ("dogs", slice(4, 8))):
        (folder / name).mkdir(parents=True)
        for k in range(20):
            img = rng.integers(0, 60, (8, 8), dtype=np.uint8)
            img[rows] += 180  # cats bright on top, dogs at the bottom
            Image.fromarray(img).save(folder / name / f"{k}.png")
    run = tmp_path / "run"
    assert main(["train", "--data", str(folder), "--labelled", "6", "--epochs", "3",
                 "--hidden", "16", "--latent-dim", "2", "--prior", "conditional",
                 "--out", str(run), "--quiet"]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["classes"] == ["cats", "dogs"] and cfg["data"]["labelled"] == 6
    page = (run / "report.html").read_text()
    assert "Samples per class" in page and "test accuracy of q(y|x)" in page
    assert main(["sample", str(run), "--label", "cats", "-n", "4", "-o",
                 str(tmp_path / "c.npy")]) == 0
    assert main(["sample", str(run), "--label", "all", "-o", str(tmp_path / "all.png")]) == 0
    assert main(["classify", str(run), "--split", "all", "-o", str(tmp_path / "p.csv")]) == 0
    names = {r.split(",")[2] for r in (tmp_path / "p.csv").read_text().splitlines()[1:]}
    assert names <= {"cats", "dogs"}
    assert main(["encode", str(run), "-o", str(tmp_path / "z.npz")]) == 0
    assert main(["reconstruct", str(run), "-n", "2", "-o", str(tmp_path / "r.png")]) == 0


def test_user_errors_are_one_line(tmp_path: Path, capsys, digits_run: Path) -> None:
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((40, 8, 8)).astype(np.float32))
    one_line_error(capsys, ["train", "--data", str(tmp_path / "x.npy"), "--condition", "label",
                            "--out", str(tmp_path / "r"), *SMALL], "has no labels")
    one_line_error(capsys, ["train", "--data", "digits", "--alpha", "3",
                            "--out", str(tmp_path / "r"), *SMALL], "add --labelled N")
    one_line_error(capsys, ["train", "--data", "digits", "--labelled", "5",
                            "--out", str(tmp_path / "r"), *SMALL], "at least the number")
    one_line_error(capsys, ["sample", str(digits_run), "--label", "3", "-o",
                            str(tmp_path / "s.png")], "conditioned on labels")
