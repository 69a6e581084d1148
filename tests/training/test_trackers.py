"""Experiment trackers: what TensorBoard, MLflow and W&B received is read back and compared
with metrics.jsonl; a resumed run continues the same tracker runs."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from varfam import VarfamError
from varfam.cli import main
from varfam.runs.metrics import read_metrics

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

TRAIN = ["train", "--data", "digits", "--limit", "300", "--hidden", "16", "--latent-dim", "2",
         "--quiet", "--seed", "1"]


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, monkeypatch_module) -> Path:
    """Two epochs with every tracker, then a resume to three (W&B offline, as without login)."""
    monkeypatch_module.setenv("WANDB_MODE", "offline")
    monkeypatch_module.setenv("WANDB_SILENT", "true")
    run = tmp_path_factory.mktemp("tracked") / "run"
    names = "tensorboard,mlflow,wandb" if _has("wandb") else "tensorboard,mlflow"
    assert main([*TRAIN, "--epochs", "2", "--out", str(run), "--track", names]) == 0
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet", "--no-report"]) == 0
    return run


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _epoch_metric(run: Path, key: str) -> list[tuple[int, float]]:
    epochs, _ = read_metrics(run)
    return [(r["epoch"], r[key]) for r in epochs]


def test_tensorboard_holds_every_epoch_once(tracked) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tracked / "tracking" / "tensorboard"),
                           size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    events = acc.Scalars("test_elbo")
    got = [(e.step, e.value) for e in events]
    want = _epoch_metric(tracked, "test_elbo")
    assert [s for s, _ in got] == [1, 2, 3]  # the resume added epoch 3 and duplicated nothing
    assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6)
    assert set(acc.Tags()["images"]) >= {"samples", "reconstructions", "latent"}
    assert "config/text_summary" in acc.Tags()["tensors"]


def test_mlflow_has_the_run_its_params_metrics_and_files(tracked) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tracked / 'tracking' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("varfam")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1  # the resume continued the same run
    run = runs[0]
    assert run.data.params["data.source"] == "digits"
    assert run.data.params["model.family"] == "diagonal"
    history = client.get_metric_history(run.info.run_id, "test_elbo")
    got = sorted((m.step, m.value) for m in history)
    want = _epoch_metric(tracked, "test_elbo")
    assert [s for s, _ in got] == [s for s, _ in want] == [1, 2, 3]
    assert [v for _, v in got] == pytest.approx([v for _, v in want])
    files = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"config.json", "model.safetensors", "report.html", "pictures"} <= files
    assert run.info.status == "FINISHED"


def _wandb_records(path: Path) -> list[bytes]:
    """The records of a W&B ``.wandb`` file: a 7-byte header, then LevelDB-log blocks of
    32 KiB whose records are (crc32, length, type) + data, split across blocks."""
    raw = path.read_bytes()
    assert raw[:4] == b":W&B"
    records, pending, pos, block = [], b"", 7, 32768
    while pos + 7 <= len(raw):
        left = block - pos % block
        if left < 7:  # the block's tail is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        data = raw[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 2):  # full, first
            pending = data
        else:  # middle, last
            pending += data
        if kind in (1, 4):
            records.append(pending)
    return records


def test_wandb_offline_run_holds_the_metrics(tracked) -> None:
    if not _has("wandb"):
        pytest.skip("wandb is not installed (pip install 'varfam[wandb]')")
    from wandb.proto import wandb_internal_pb2 as pb

    run_id = json.loads((tracked / "trackers.json").read_text())["wandb"]
    files = sorted((tracked / "tracking" / "wandb").glob(f"offline-run-*-{run_id}/run-*.wandb"))
    assert len(files) == 2  # the run, and its resumption under the same id
    logged: dict[int, float] = {}
    for f in files:
        for data in _wandb_records(f):
            rec = pb.Record()
            rec.ParseFromString(data)
            if rec.WhichOneof("record_type") == "history":
                items = {i.key or "/".join(i.nested_key): json.loads(i.value_json)
                         for i in rec.history.item}
                if "test_elbo" in items:
                    logged[int(items["_step"])] = items["test_elbo"]
    want = dict(_epoch_metric(tracked, "test_elbo"))
    assert logged.keys() == want.keys()
    assert [logged[k] for k in sorted(logged)] == pytest.approx([want[k] for k in sorted(want)])


def test_a_missing_tracker_package_is_a_one_line_error(monkeypatch, tmp_path) -> None:
    import importlib.util

    from varfam.config import TrainConfig
    from varfam.training.trackers import make_trackers

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(VarfamError, match=r"pip install 'varfam\[wandb\]'"):
        make_trackers(TrainConfig(track=["wandb"]), tmp_path)


def test_unknown_tracker_names_are_refused(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main([*TRAIN, "--track", "tensorbord"])
    assert e.value.code == 2
    assert "did you mean 'tensorboard'" in capsys.readouterr().err
