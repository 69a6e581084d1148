"""Errors a user can cause end in one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import varfam
from varfam.cli import main


def fails(capsys: pytest.CaptureFixture, *argv: object) -> str:
    """Run the CLI expecting exit code 2; return the single stderr line."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no message"
    last = err[-1]
    assert "Traceback" not in "\n".join(err)
    assert last.startswith("varfam")
    return last


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--epochs", "-1"], "--epochs"),
        (["--epochs", "0"], "at least 1"),
        (["--lr", "abc"], "not a number"),
        (["--lr", "nan"], "--lr"),
        (["--latent-dim", "0"], "--latent-dim"),
        (["--hidden", "400,x"], "--hidden"),
        (["--binarize", "sometimes"], "--binarize"),
    ],
)
def test_bad_numbers(capsys, argv, needle) -> None:
    assert needle in fails(capsys, "train", "--data", "digits", *argv)


def test_unknown_family_lists_known_and_suggests(capsys, tmp_path) -> None:
    msg = fails(capsys, "train", "--data", "digits", "--family", "diagonl", "--out", tmp_path / "r")
    assert "unknown family 'diagonl'" in msg and "did you mean 'diagonal'" in msg
    assert "known:" in msg


def test_unknown_prior_likelihood_objective_arch(capsys, tmp_path) -> None:
    for flag in ("--prior", "--likelihood", "--objective", "--arch"):
        msg = fails(capsys, "train", "--data", "digits", flag, "nope", "--out", tmp_path / "r")
        assert "'nope'" in msg


def test_family_option_not_taken(capsys, tmp_path) -> None:
    msg = fails(capsys, "train", "--data", "digits", "--flow-steps", "3", "--out", tmp_path / "r")
    assert "takes no option 'flow_steps'" in msg


def test_unknown_dataset(capsys) -> None:
    msg = fails(capsys, "train", "--data", "no-such-thing")
    assert "no-such-thing" in msg


def test_config_unknown_key_and_wrong_type(capsys, tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nlatent_dims = 3\n")
    msg = fails(capsys, "train", "--config", bad)
    assert "unknown key 'latent_dims'" in msg and "latent_dim" in msg
    bad.write_text('[train]\nepochs = "ten"\n')
    assert "must be an integer" in fails(capsys, "train", "--config", bad)
    bad.write_text("[train\n")
    assert "not valid TOML" in fails(capsys, "train", "--config", bad)
    assert "does not exist" in fails(capsys, "train", "--config", tmp_path / "missing.toml")


def test_conv_on_vectors_is_refused(capsys, tmp_path) -> None:
    np = pytest.importorskip("numpy")
    arr = tmp_path / "vec.npy"
    np.save(arr, np.random.default_rng(0).random((50, 10), dtype=np.float32))
    msg = fails(capsys, "train", "--data", arr, "--arch", "conv", "--out", tmp_path / "r")
    assert "conv" in msg and "--arch mlp" in msg


def test_bernoulli_refuses_values_outside_unit_interval() -> None:
    x = torch.rand(40, 1, 4, 4) * 3
    data = varfam.Dataset("big", x[:30], x[30:])
    model = varfam.VAE.build(data_shape=(1, 4, 4), hidden=(8,), latent_dim=2)
    with pytest.raises(varfam.VarfamError, match=r"\[0, 1\].*gaussian"):
        varfam.train(model, data, epochs=1)


def test_not_a_run(capsys, tmp_path) -> None:
    assert "is not a varfam run" in fails(capsys, "eval", tmp_path)
    assert "does not exist" in fails(capsys, "sample", tmp_path / "nope", "-o", tmp_path / "s.png")


def test_weights_that_do_not_match_config(capsys, digits_run, tmp_path) -> None:
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"]["latent_dim"] = 7
    (run / "config.json").write_text(json.dumps(cfg))
    assert "do not match its config.json" in fails(capsys, "eval", run)


def test_corrupt_config_json(capsys, digits_run, tmp_path) -> None:
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    (run / "config.json").write_text("{not json")
    assert "not valid JSON" in fails(capsys, "eval", run)
    (run / "config.json").write_text(json.dumps({"model": {"family": 3}, "train": {}}))
    assert "must be a string" in fails(capsys, "eval", run)


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/varfam-pickle-was-executed"),))


def test_pickle_payload_is_refused(capsys, digits_run, tmp_path) -> None:
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    marker = Path("/tmp/varfam-pickle-was-executed")
    marker.unlink(missing_ok=True)
    (run / "model.safetensors").write_bytes(pickle.dumps({"weights": _Payload()}))
    msg = fails(capsys, "eval", run)
    assert "safetensors" in msg
    assert not marker.exists()
    # a torch.save'd state dict in place of the weights is refused too
    torch.save({"x": torch.zeros(1)}, run / "model.safetensors")
    assert "safetensors" in fails(capsys, "eval", run)
    assert not marker.exists()


def test_resume_of_finished_run(capsys, digits_run, tmp_path) -> None:
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    msg = fails(capsys, "train", "--resume", run)
    assert "already finished 2 epochs" in msg and "--epochs" in msg


@pytest.mark.slow  # fresh interpreters, one per command: about 4 s
def test_subprocess_exit_code_and_no_traceback(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "varfam", "eval", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


# ---------------------------------------------------------------- issue 19's small things
def test_an_empty_hidden_width_is_refused(capsys) -> None:
    for text in ("400,,400", "400,", ",400"):
        assert "empty width" in fails(capsys, "train", "--data", "digits", "--hidden", text)


def test_a_string_array_is_refused_for_its_dtype(capsys, tmp_path) -> None:
    np = pytest.importorskip("numpy")
    for name, array in (("s.npy", np.array(["a", "b", "c"])),
                        ("m.npy", np.array([["a", "b"]] * 5))):
        np.save(tmp_path / name, array)
        msg = fails(capsys, "train", "--data", tmp_path / name, "--out", tmp_path / "r")
        assert "dtype <U1" in msg and "shape" not in msg


def test_picture_outputs_name_every_accepted_extension(capsys, digits_run, tmp_path) -> None:
    msg = fails(capsys, "sample", digits_run, "-o", tmp_path / "s.gif")
    assert all(ext in msg for ext in (".png", ".jpg", ".jpeg", ".npy"))
    assert not (tmp_path / "s.gif").exists()
    assert main(["sample", str(digits_run), "-n", "4", "-o", str(tmp_path / "s.JPG")]) == 0


def test_decoding_non_finite_latents_is_refused(capsys, digits_run, tmp_path) -> None:
    np = pytest.importorskip("numpy")
    for bad in (np.nan, np.inf):
        z = np.zeros((3, 4), np.float32)
        z[1, 2] = bad
        np.save(tmp_path / "z.npy", z)
        msg = fails(capsys, "decode", digits_run, "--latents", tmp_path / "z.npy",
                    "-o", tmp_path / "x.png")
        assert "non-finite latents" in msg and "1 of 3 rows" in msg
    assert not (tmp_path / "x.png").exists()
    np.save(tmp_path / "s.npy", np.array([["a"] * 4] * 2))
    assert "dtype" in fails(capsys, "decode", digits_run, "--latents", tmp_path / "s.npy",
                            "-o", tmp_path / "x.png")
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 4)), b=np.zeros((2, 4)))
    assert "'loc'" in fails(capsys, "decode", digits_run, "--latents", tmp_path / "two.npz",
                            "-o", tmp_path / "x.png")


def test_help_names_every_architecture_and_the_test_limit(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "mlp, gated-mlp or conv" in text
    assert "--test-limit" in text and "max(N/10, 1) test examples" in text
