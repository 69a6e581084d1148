"""Every command end to end on a small run (digits), through `varfam.cli.app`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from varfam.cli import main


def run(*argv: str) -> int:
    return main([str(a) for a in argv])


def test_train_writes_the_run_folder(digits_run: Path) -> None:
    for name in ("config.json", "model.safetensors", "metrics.jsonl", "checkpoint.safetensors",
                 "reconstructions.png", "samples.png", "interpolation.png", "latent.png"):
        assert (digits_run / name).is_file(), name
    lines = [json.loads(s) for s in (digits_run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in lines if "kind" not in r]
    assert [r["epoch"] for r in epochs] == [1, 2]
    for key in ("train_loss", "test_elbo", "wall_time", "samples_per_s"):
        assert np.isfinite(epochs[-1][key])
    cfg = json.loads((digits_run / "config.json").read_text())
    assert cfg["model"]["data_shape"] == [1, 8, 8] and cfg["train"]["seed"] == 3


def test_eval_json(digits_run: Path, capsys: pytest.CaptureFixture) -> None:
    assert run("eval", digits_run, "--json") == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["elbo"] < 0 and out["kl"] >= 0
    assert abs(out["elbo"] - (out["reconstruction"] - out["kl"])) < 1e-6


def test_sample_png_and_npy(digits_run: Path, tmp_path: Path) -> None:
    assert run("sample", digits_run, "-n", "10", "-o", tmp_path / "s.png") == 0
    assert Image.open(tmp_path / "s.png").size[0] > 0
    assert run("sample", digits_run, "-n", "10", "-o", tmp_path / "s.npy") == 0
    arr = np.load(tmp_path / "s.npy")
    assert arr.shape == (10, 1, 8, 8) and 0 <= arr.min() and arr.max() <= 1


def test_reconstruct_draws_differ(digits_run: Path, tmp_path: Path) -> None:
    assert run("reconstruct", digits_run, "-n", "3", "--draws", "4", "-o", tmp_path / "r.npy") == 0
    arr = np.load(tmp_path / "r.npy").reshape(3, 5, 1, 8, 8)  # input + 4 draws per row
    assert not np.allclose(arr[:, 1], arr[:, 2])
    assert run("reconstruct", digits_run, "-o", tmp_path / "r.png") == 0


def test_interpolate(digits_run: Path, tmp_path: Path) -> None:
    assert run("interpolate", digits_run, "--pairs", "2", "--steps", "5", "-o",
               tmp_path / "i.npy") == 0
    assert np.load(tmp_path / "i.npy").shape == (10, 1, 8, 8)
    assert run("interpolate", digits_run, "-o", tmp_path / "i.png") == 0


def test_encode_then_decode(digits_run: Path, tmp_path: Path) -> None:
    assert run("encode", digits_run, "-o", tmp_path / "z.npy") == 0
    z = np.load(tmp_path / "z.npy")
    assert z.shape[1:] == (2, 4) and (z[:, 1] > 0).all()  # [mean, scale] per example
    assert run("encode", digits_run, "-o", tmp_path / "z.npz") == 0
    with np.load(tmp_path / "z.npz") as f:
        assert set(f.files) == {"loc", "scale", "labels", "index", "split"}
        np.testing.assert_array_equal(f["loc"], z[:, 0])
    assert run("decode", digits_run, "--latents", tmp_path / "z.npy", "-o", tmp_path / "d.npy") == 0
    assert np.load(tmp_path / "d.npy").shape == (z.shape[0], 1, 8, 8)
    # decode reads the .npz that encode writes (its loc), the same images as from the .npy
    assert run("decode", digits_run, "--latents", tmp_path / "z.npz", "-o", tmp_path / "e.npy") == 0
    np.testing.assert_array_equal(np.load(tmp_path / "e.npy"), np.load(tmp_path / "d.npy"))
    assert run("decode", digits_run, "--latents", tmp_path / "z.npz", "-o", tmp_path / "e.png") == 0
    np.save(tmp_path / "bad.npy", np.zeros((3, 7), np.float32))
    assert run("decode", digits_run, "--latents", tmp_path / "bad.npy", "-o",
               tmp_path / "d.png") == 2


def test_list_names_every_kind(capsys: pytest.CaptureFixture) -> None:
    assert run("list") == 0
    out = capsys.readouterr().out
    for kind in ("datasets:", "families:", "priors:", "likelihoods:", "objectives:",
                 "architectures:"):
        assert kind in out
    assert "diagonal" in out and "mnist5k" in out


def test_every_command_has_help(capsys: pytest.CaptureFixture) -> None:
    from varfam.cli.app import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in sub.choices:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
        assert "usage: varfam" in capsys.readouterr().out


def test_toml_config_and_flags_override(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[model]\nlatent_dim = 3\nhidden = [32]\n[data]\nsource = "digits"\n'
                   "limit = 300\n[train]\nepochs = 1\n")
    out = tmp_path / "run"
    assert run("train", "--config", cfg, "--latent-dim", "2", "--out", out, "--quiet") == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["latent_dim"] == 2 and saved["model"]["hidden"] == [32]
    assert saved["data"]["limit"] == 300


def test_encode_splits_keep_labels_and_indices(digits_run: Path, tmp_path: Path) -> None:
    import varfam

    ds = varfam.load_dataset("digits")
    for split, n in (("all", 1797), ("train", 1497), ("test", 300)):
        assert run("encode", digits_run, "--split", split, "-o", tmp_path / f"{split}.npz") == 0
        with np.load(tmp_path / f"{split}.npz") as f:
            assert f["loc"].shape == (n, 4) and f["labels"].shape == (n,)
            assert set(f["split"].tolist()) == ({"train", "test"} if split == "all" else {split})
            index, labels = f["index"], f["labels"]
        if split == "all":  # every example of the data set once, in the file's order
            assert index.tolist() == list(range(1797))
        # the index finds the example's label in the data set as read
        by_index = np.empty(1797, np.int64)
        by_index[ds.train_index.numpy()] = ds.train_labels.numpy()
        by_index[ds.test_index.numpy()] = ds.test_labels.numpy()
        np.testing.assert_array_equal(by_index[index], labels)
    with np.load(tmp_path / "all.npz") as f, np.load(tmp_path / "test.npz") as g:
        np.testing.assert_array_equal(f["loc"][g["index"]], g["loc"])  # the same encoder


def test_test_limit_cuts_the_test_set_and_is_recorded(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run("train", "--data", "digits", "--limit", "200", "--test-limit", "50", "--epochs", "1",
               "--hidden", "16", "--latent-dim", "2", "--out", out, "--quiet", "--no-report") == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["data"]["limit"] == 200 and saved["data"]["test_limit"] == 50
    from varfam.runs.folder import open_run, run_dataset

    _, cfg = open_run(out)
    ds = run_dataset(cfg)
    assert ds.train.shape[0] == 200 and ds.test.shape[0] == 50
