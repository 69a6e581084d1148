"""Hugging Face Hub runs without a network: a standard hub cache laid out on disk, read offline
through Python and every RUN-taking command; a push whose upload call is replaced."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import varfam
from varfam.cli import main
from varfam.config import DataConfig, TrainConfig
from varfam.errors import VarfamError
from varfam.reporting.explore import Explorer
from varfam.runs.checkpoint import save_model
from varfam.runs.folder import open_run

hf = pytest.importorskip("huggingface_hub")
yaml = pytest.importorskip("yaml")

REPO = "alice/tiny-vae"
SRC = Path(__file__).resolve().parents[2] / "src"


def put_in_cache(cache: Path, repo_id: str, files: dict[str, bytes], ref: str = "main") -> Path:
    """Lay ``files`` out as huggingface_hub's cache does: blobs by hash, a snapshot folder of
    relative links to them, and ``refs/<ref>`` naming the snapshot's commit."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(b"".join(k.encode() + v for k, v in sorted(files.items()))).hexdigest()
    snapshot = repo / "snapshots" / commit
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():  # the same files make the same commit
            link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An offline Hugging Face home in tmp_path (huggingface_hub reads its settings at import,
    so its constants are set too) and varfam's working copies under tmp_path/xdg."""
    from huggingface_hub import constants

    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return home / "hub"


@pytest.fixture
def run(tmp_path) -> Path:
    """A finished tiny run on `digits`, as `varfam train` leaves it (plus files never pushed)."""
    torch.manual_seed(0)
    model = varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(16,))
    out = tmp_path / "run"
    save_model(model, out, TrainConfig(epochs=1), DataConfig(source="digits", limit=200))
    lines = [{"epoch": 1, "step": 2, "train_loss": 44.0, "test_elbo": -43.5},
             {"kind": "eval", "after_epoch": 1, "data": "digits", "n": 40, "latent_dim": 2,
              "iw": 50, "elbo": -43.6, "elbo_se": 0.1, "log_likelihood": -42.84,
              "log_likelihood_se": 0.07, "inference_gap": 0.76, "active_units": 1}]
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    for name in ("samples.png", "reconstructions.png", "interpolation.png", "latent.png"):
        (out / name).write_bytes(b"\x89PNG fake " + name.encode())
    (out / "report.html").write_text("<html>report</html>")
    (out / "checkpoint.safetensors").write_bytes(b"optimizer state")
    (out / ".lock").write_text("123\n")
    (out / "my-notes.txt").write_text("private")
    return out


def cache_run(cache: Path, run: Path, ref: str = "main", repo: str = REPO) -> Path:
    names = ("config.json", "model.safetensors", "metrics.jsonl", "samples.png")
    return put_in_cache(cache, repo, {n: (run / n).read_bytes() for n in names}, ref)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (links followed) → the hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- pull
def test_load_from_the_hub_cache_offline(hub, run):
    snapshot = cache_run(hub, run)
    cache_run(hub, run, ref="v2")  # the same files under a branch name
    original = varfam.load(run)
    for ref in (REPO, f"{REPO}@main", f"{REPO}@v2", f"{REPO}@{snapshot.name}"):
        model = varfam.load(f"hf://{ref}")
        assert same_weights(model, original) and not model.training
    model, cfg = open_run(f"hf://{REPO}")
    assert same_weights(model, original) and cfg.data.source == "digits"


def test_every_run_command_takes_a_hub_run(hub, run, tmp_path, monkeypatch, capsys):
    snapshot = cache_run(hub, run)
    before = tree(hub)
    ref, out = f"hf://{REPO}", tmp_path / "out"
    for argv in (["sample", ref, "-n", "4", "-o", str(out / "s.png")],
                 ["reconstruct", ref, "-n", "2", "--draws", "2", "-o", str(out / "r.png")],
                 ["interpolate", ref, "--pairs", "1", "--steps", "3", "-o", str(out / "i.png")],
                 ["encode", ref, "-o", str(out / "z.npy")],
                 ["decode", ref, "--latents", str(out / "z.npy"), "-o", str(out / "d.png")],
                 ["eval", ref, "--iw", "4", "--limit", "10", "--mi-examples", "10"],
                 ["report", ref, "--iw", "2", "--limit", "10"],
                 ["compare", ref, str(run)]):
        assert main(argv) == 0, argv
    for name in ("s.png", "r.png", "i.png", "z.npy", "d.png"):
        assert (out / name).is_file()
    served = []
    monkeypatch.setattr("varfam.reporting.explore.serve", lambda run, **kw: served.append(
        Explorer.from_run(run, limit=10)))
    assert main(["explore", ref]) == 0 and served[0].model.latent_dim == 2
    # the cache is left exactly as downloaded; the records went to varfam's working copy
    assert tree(hub) == before
    copy = tmp_path / "xdg" / "varfam" / "hub" / "alice--tiny-vae" / snapshot.name
    records = (copy / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r).get("source") for r in records[2:]] == ["eval", "report"]
    assert (copy / "report.html").is_file()
    capsys.readouterr()


@pytest.mark.slow  # kept out of make test's 4-minute budget
def test_offline_command_in_a_fresh_process(hub, run, tmp_path):
    """HF_HUB_OFFLINE=1 and HF_HOME as a user sets them, read by a new interpreter."""
    cache_run(hub, run)
    env = {**os.environ, "PYTHONPATH": str(SRC)}  # HF_HOME, HF_HUB_OFFLINE, XDG set by `hub`
    out = tmp_path / "fresh.npy"
    done = subprocess.run([sys.executable, "-m", "varfam", "sample", f"hf://{REPO}", "-n", "3",
                           "-o", str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert out.is_file()


def _error(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("varfam: error: ") and err.count("\n") == 1, err
    return err


def test_hub_errors_are_one_line(hub, run, tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "x.png")
    err = _error(["sample", f"hf://{REPO}", "-o", out], capsys)
    assert "not in the Hugging Face cache" in err and "HF_HUB_OFFLINE" in err
    put_in_cache(hub, "bob/bert", {"config.json": b'{"model_type": "bert"}', "README.md": b"x"})
    assert "is not a varfam model" in _error(["sample", "hf://bob/bert", "-o", out], capsys)
    put_in_cache(hub, "bob/empty", {"README.md": b"x"})
    assert "no config.json" in _error(["eval", "hf://bob/empty"], capsys)
    assert "not a Hub model reference" in _error(["sample", "hf://alice", "-o", out], capsys)
    monkeypatch.setattr(hf, "snapshot_download", _raises(hf.utils.RevisionNotFoundError))
    with pytest.raises(VarfamError, match="no revision 'v9'"):
        varfam.load(f"hf://{REPO}@v9")
    monkeypatch.setattr(hf, "snapshot_download", _raises(hf.utils.RepositoryNotFoundError))
    assert "no model repo alice/gone" in _error(["sample", "hf://alice/gone", "-o", out], capsys)


def _raises(kind):
    def fail(*args, **kwargs):
        error = kind.__new__(kind)  # the Hub's errors want an HTTP response to be built
        Exception.__init__(error, "404")
        raise error

    return fail


def test_no_network(hub, monkeypatch, capsys, run, tmp_path):
    """Online mode against a port where nothing listens: the connection is refused."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    err = _error(["sample", f"hf://{REPO}", "-o", str(tmp_path / "x.png")], capsys)
    assert "cannot reach the Hugging Face Hub" in err
    monkeypatch.setattr(hf, "get_token", lambda: "hf_test")
    assert "cannot reach the Hugging Face Hub" in _error(["push", str(run), REPO], capsys)


# ---------------------------------------------------------------- push
@pytest.fixture
def fake_hub(hub, monkeypatch):
    """HfApi's repo, branch and commit calls replaced: commits land in the local cache."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf, "get_token", lambda: "hf_test")
    calls: dict[str, list] = {"repo": [], "branch": [], "commit": []}

    def create_repo(self, repo_id, *, private=None, exist_ok=False, **kw):
        calls["repo"].append((repo_id, private, exist_ok))

    def create_branch(self, repo_id, *, branch, exist_ok=False, **kw):
        calls["branch"].append((repo_id, branch))

    def create_commit(self, repo_id, operations, *, commit_message, revision=None, **kw):
        files = {}
        for op in operations:
            source = op.path_or_fileobj
            files[op.path_in_repo] = source if isinstance(source, bytes) else Path(
                source).read_bytes()
        calls["commit"].append((repo_id, revision, files))
        put_in_cache(hub, repo_id, files, revision or "main")

    monkeypatch.setattr(hf.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(hf.HfApi, "create_branch", create_branch)
    monkeypatch.setattr(hf.HfApi, "create_commit", create_commit)
    return calls


def split_card(text: str) -> tuple[dict, str]:
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(front), body


def test_push_uploads_the_run_and_a_card(fake_hub, run, monkeypatch, capsys):
    assert main(["push", str(run), REPO, "--private"]) == 0
    assert capsys.readouterr().out.strip() == f"https://huggingface.co/{REPO}"
    assert fake_hub["repo"] == [(REPO, True, True)] and fake_hub["branch"] == []
    [(repo_id, revision, files)] = fake_hub["commit"]
    assert repo_id == REPO and revision is None
    assert set(files) == {"config.json", "model.safetensors", "metrics.jsonl", "report.html",
                          "samples.png", "reconstructions.png", "interpolation.png",
                          "latent.png", "README.md"}
    assert files["model.safetensors"] == (run / "model.safetensors").read_bytes()
    meta, body = split_card(files["README.md"].decode())
    assert meta["library_name"] == "varfam" and meta["license"] == "mit"
    assert set(meta["tags"]) == {"vae", "varfam", "diagonal", "digits"}
    assert f'varfam.load("hf://{REPO}")' in body
    assert "Kingma & Welling 2014" in body  # the diagonal family's paper
    assert "| -42.84 ± 0.07 |" in body and "K = 50 on 40" in body and "1 of 2" in body
    assert "| epochs | 1 |" in body and "| lr | 0.001 |" in body
    for picture in ("samples.png", "reconstructions.png", "interpolation.png", "latent.png"):
        assert f"]({picture})" in body
    # what went up comes back down, offline, as the same model
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert same_weights(varfam.load(f"hf://{REPO}"), varfam.load(run))


def test_push_to_a_branch(fake_hub, run):
    assert main(["push", str(run), REPO, "--revision", "v2", "--license", "apache-2.0"]) == 0
    assert fake_hub["branch"] == [(REPO, "v2")]
    [(_, revision, files)] = fake_hub["commit"]
    meta, body = split_card(files["README.md"].decode())
    assert revision == "v2" and meta["license"] == "apache-2.0"
    assert f'varfam.load("hf://{REPO}@v2")' in body
    assert same_weights(varfam.load(f"hf://{REPO}@v2"), varfam.load(run))


def test_push_errors(fake_hub, run, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(hf, "get_token", lambda: None)
    assert "no Hugging Face token" in _error(["push", str(run), REPO], capsys)
    monkeypatch.setattr(hf, "get_token", lambda: "hf_test")
    assert "not a varfam run" in _error(["push", str(tmp_path), REPO], capsys)
    assert "--revision" in _error(["push", str(run), f"{REPO}@v2"], capsys)
    assert fake_hub["commit"] == []


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"varfam {varfam.__version__}"
