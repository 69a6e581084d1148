"""The training loop's callbacks, its printing with and without a terminal, its state, and
the structure the reshaped loop promises: hooks on the base classes, no global torch state
changed by ``import varfam`` (the import graph is checked in tests/test_architecture.py)."""

from __future__ import annotations

import ast
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import varfam
from _models import small_vae
from varfam import VAE, Callback, TrainState
from varfam.cli import main
from varfam.registry import FAMILIES, LIKELIHOODS, PRIORS
from varfam.runs.checkpoint import CHECKPOINT, load_checkpoint
from varfam.runs.metrics import read_metrics
from varfam.training.callbacks import ProgressDisplay

SMALL = dict(data_shape=(1, 8, 8), hidden=(16,), latent_dim=2)
SRC = Path(varfam.__file__).parent


def _model() -> VAE:
    return small_vae(0, **SMALL)


class Recorder(Callback):
    """Counts every call and adds a custom metric."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.steps = 0

    def on_train_start(self, run):
        self.calls.append(f"start {run.start_epoch} {run.batches_per_epoch}")

    def on_epoch_start(self, state):
        self.calls.append(f"epoch_start {state.epoch}")

    def on_step_end(self, state):
        self.steps += 1

    def on_epoch_end(self, state, metrics):
        self.calls.append(f"epoch_end {state.epoch}")
        metrics["double_loss"] = 2 * metrics["train_loss"]

    def on_images(self, state, name, path):
        self.calls.append(f"image {name} {Path(path).is_file()}")

    def on_train_end(self, result):
        self.calls.append(f"end {len(result.history)}")


# ---------------------------------------------------------------- printing (the bug of issue 16)
def test_python_train_prints_nothing_by_default(digits, capsys) -> None:
    """varfam.train(model, data) is silent: the old loop overwrote its `progress` flag with
    the schedule's fraction and printed bars and lines from epoch 2 on."""
    varfam.train(_model(), digits, epochs=3, batch_size=64)
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_progress_without_a_terminal_prints_one_line_per_epoch(digits) -> None:
    stream = io.StringIO()  # not a terminal
    display = ProgressDisplay(stream=stream)
    varfam.train(_model(), digits, epochs=3, batch_size=64, callbacks=[display])
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    assert all("test ELBO" in line for line in lines)


def test_progress_on_a_terminal_draws_bars(digits) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    varfam.train(_model(), digits, epochs=2, batch_size=64,
                 callbacks=[ProgressDisplay(stream=stream)])
    text = stream.getvalue()
    assert "\r" in text and "epoch 1/2" in text and "epoch   2/2" in text


def test_cli_quiet_prints_only_the_summary(tmp_path, capsys) -> None:
    code = main(["train", "--data", "digits", "--limit", "300", "--epochs", "3", "--hidden", "16",
                 "--latent-dim", "2", "--out", str(tmp_path / "run"), "--quiet", "--no-report"])
    assert code == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert len(out.splitlines()) == 1 and out.startswith("test ELBO")


def test_cli_without_a_terminal_prints_a_line_per_epoch(tmp_path, capsys) -> None:
    code = main(["train", "--data", "digits", "--limit", "300", "--epochs", "2", "--hidden", "16",
                 "--latent-dim", "2", "--out", str(tmp_path / "run"), "--no-report"])
    assert code == 0
    out, err = capsys.readouterr()
    assert "\r" not in err
    lines = err.splitlines()
    assert lines[0].startswith("training diagonal VAE on digits")
    assert [line.split()[:2] for line in lines[1:]] == [["epoch", "1/2"], ["epoch", "2/2"]]


# ---------------------------------------------------------------- the callback protocol
def test_callbacks_are_called_in_order_and_add_metrics(digits, tmp_path) -> None:
    from varfam.reporting.callbacks import RunPictures

    rec = Recorder()
    result = varfam.train(_model(), digits, epochs=2, batch_size=100, out=tmp_path / "run",
                          callbacks=[rec, RunPictures()])
    n_batches = -(-len(digits.train) // 100)
    assert rec.steps == 2 * n_batches
    assert rec.calls[:5] == [f"start 0 {n_batches}", "epoch_start 0", "epoch_end 1",
                             "epoch_start 1", "epoch_end 2"]
    # the recorder comes before RunPictures: it ends first, then receives the pictures
    assert rec.calls[5] == "end 2"
    assert [c.split()[0] for c in rec.calls[6:]] == ["image"] * 4
    epochs, _ = read_metrics(tmp_path / "run")
    assert [r["double_loss"] for r in epochs] == [r["double_loss"] for r in result.history]
    assert epochs[0]["double_loss"] == pytest.approx(2 * epochs[0]["train_loss"])


def test_images_reach_callbacks_after_the_picture_writer(digits, tmp_path) -> None:
    from varfam.reporting.callbacks import RunPictures

    rec = Recorder()
    varfam.train(_model(), digits, epochs=1, batch_size=100, out=tmp_path / "run",
                 callbacks=[RunPictures(), rec])
    images = [c for c in rec.calls if c.startswith("image")]
    assert images == [f"image {n} True"
                      for n in ("reconstructions", "samples", "interpolation", "latent")]


def test_callbacks_must_be_callbacks(digits) -> None:
    with pytest.raises(TypeError, match="varfam.Callback"):
        varfam.train(_model(), digits, epochs=1, callbacks=[object()])


def test_the_state_callbacks_see_is_the_checkpoint(digits, tmp_path) -> None:
    seen: list[TrainState] = []

    class Keep(Callback):
        def on_epoch_end(self, state, metrics):
            seen.append(state)

    result = varfam.train(_model(), digits, epochs=2, batch_size=64, out=tmp_path / "run",
                          validation=50, callbacks=[Keep()])
    tensors, info = load_checkpoint(tmp_path / "run" / CHECKPOINT, _model())
    saved = TrainState.from_checkpoint(info, tensors)
    assert seen[-1] is result.state
    assert saved == result.state
    assert saved.epoch == 2 and saved.batch == 0 and saved.best_epoch in (1, 2)
    assert saved.history == json.loads(json.dumps(result.history))


def test_state_round_trips_and_reads_old_checkpoints() -> None:
    s = TrainState(epoch=3, step=30, wall_time=1.5, elapsed=2.0, best_validation=-80.0,
                   best_epoch=2, history=[{"epoch": e} for e in (1, 2, 3)])
    info, tensors = s.to_checkpoint(world_size=1)
    assert TrainState.from_checkpoint(json.loads(json.dumps(info)), tensors) == s
    # a checkpoint of an older varfam: no elapsed, no best; both come from the history
    old = {"epoch": 2, "batch": 0, "step": 20, "wall_time": 1.0, "world_size": 1,
           "history": [{"epoch": 1, "validation_elbo": -90.0, "elapsed": 1.2},
                       {"epoch": 2, "validation_elbo": -95.0, "elapsed": 2.5}]}
    state = TrainState.from_checkpoint(old, {})
    assert (state.elapsed, state.best_validation, state.best_epoch) == (2.5, -90.0, 1)


# ---------------------------------------------------------------- hooks, imports, global state
@pytest.mark.parametrize("registry", [FAMILIES, PRIORS, LIKELIHOODS], ids=lambda r: r.kind)
def test_every_part_declares_the_training_hooks(registry) -> None:
    from varfam.parts import TrainingHooks

    for entry in registry:
        assert issubclass(entry.target, TrainingHooks), entry.name


def test_no_getattr_hook_lookups_in_the_loop() -> None:
    for name in ("training/loop.py", "model.py", "training/step.py"):
        text = (SRC / name).read_text()
        for hook in ("set_epoch", "set_progress", "observe", "default_prior_options"):
            assert f'"{hook}"' not in text, (name, hook)


def test_import_varfam_leaves_torch_distribution_settings_alone() -> None:
    """zuko sets Distribution._validate_args and arg_constraints for the whole process when
    imported; varfam imports it only for a flow prior and puts both back."""
    code = (
        "import torch\n"
        "from torch.distributions import Distribution as D\n"
        "before = (D._validate_args, D.__dict__['arg_constraints'])\n"
        "import varfam\n"
        "after_import = (D._validate_args, D.__dict__['arg_constraints'])\n"
        "varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(8,), prior='flow')\n"
        "after_flow = (D._validate_args, D.__dict__['arg_constraints'])\n"
        "print(before == after_import == after_flow)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_flow_prior_works_with_argument_validation_on() -> None:
    import warnings

    model = VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(8,), prior="flow")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = model.prior_distribution()
        assert p.log_prob(torch.zeros(3, 2)).shape == (3,)


def test_the_loop_reads_in_short_functions() -> None:
    """Each step of the loop is a short named function (nanoGPT's shape, not one 200-line
    function with nine parameters)."""
    tree = ast.parse((SRC / "training" / "loop.py").read_text())
    long = [(n.name, n.end_lineno - n.lineno + 1) for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef) and n.end_lineno - n.lineno + 1 > 60]
    assert long == []


def test_help_and_version_do_not_import_torch() -> None:
    """`varfam --help` answers without importing torch (the package's names load on use)."""
    code = ("import sys, contextlib, io\n"
            "from varfam.cli import main\n"
            "for argv in (['--help'], ['--version'], ['train', '--help']):\n"
            "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "        main(argv)\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_public_name_resolves() -> None:
    import importlib

    fresh = importlib.reload(varfam)
    for name in fresh.__all__:
        assert getattr(fresh, name) is not None, name
    assert len(fresh.ALL_REGISTRIES["families"]) >= 16
