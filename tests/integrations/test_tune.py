"""varfam tune (issue 29): a pruned TPE study on digits, its outputs, and the Python API.

Trials are tiny (300 digits, 2 epochs, a 16-unit MLP), so that a study takes seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from varfam.cli import main  # noqa: E402
from varfam.config import RunConfig  # noqa: E402
from varfam.integrations.search_space import SearchSpace  # noqa: E402

BASE = """
[model]
hidden = [16]
latent_dim = 2
[data]
source = "digits"
limit = 300
[train]
epochs = 2
validation = 60
batch_size = 64
"""

SPACE = """
[model]
latent_dim = {low = 2, high = 6}
family = ["diagonal", "iaf"]
family_options.iaf.flow_steps = [1, 2]
[train]
lr = {low = 1e-5, high = 1e-2, log = true}
"""


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "base.toml").write_text(BASE)
    (tmp_path / "space.toml").write_text(SPACE)
    return tmp_path / "base.toml", tmp_path / "space.toml"


def _storage(out: Path) -> str:
    return f"sqlite:///{out / 'study.db'}"


def test_pruned_tpe_study_on_digits(files, tmp_path, capsys) -> None:
    """A TPE study with the median pruner: a trial far behind after epoch 1 is pruned, its
    run folder says so and resumes; every trial is a run folder; best.toml trains as it is."""
    base, space = files
    out = tmp_path / "study"
    out.mkdir()
    # two known trials first: a good learning rate, then one far too small (behind the
    # median after epoch 1, so pruned); TPE picks the other two
    seeded = optuna.create_study(storage=_storage(out), study_name="digits",
                                 direction="maximize")
    common = {"model.latent_dim": 4, "model.family": "diagonal"}
    seeded.enqueue_trial({**common, "train.lr": 1e-2})
    seeded.enqueue_trial({**common, "train.lr": 1e-5})
    code = main(["tune", "--config", str(base), "--space", str(space), "--trials", "4",
                 "--out", str(out), "--study", "digits", "--pruner", "median",
                 "--startup-trials", "1", "--seed", "0"])
    assert code == 0
    study = optuna.load_study(study_name="digits", storage=_storage(out))
    states = [t.state.name for t in study.trials]
    assert len(states) == 4 and states[1] == "PRUNED" and states.count("COMPLETE") >= 2
    assert isinstance(study.sampler, optuna.samplers.TPESampler)

    pruned = json.loads((out / "trial-0001" / "trial.json").read_text())
    assert pruned["state"] == "pruned" and pruned["pruned_after_epoch"] == 1
    assert "--resume" in pruned["note"]
    for t in study.trials:  # every trial is a run folder
        run = out / f"trial-{t.number:04d}"
        assert (run / "config.json").is_file() and (run / "model.safetensors").is_file()
        assert json.loads((run / "trial.json").read_text())["params"] == t.params
    epochs = [json.loads(line) for line in (out / "trial-0001" / "metrics.jsonl").open()]
    assert [r["epoch"] for r in epochs] == [1]  # stopped after the pruned epoch's line

    # the pruned trial is a normal run: it resumes, and compare reads every trial
    assert main(["train", "--resume", str(out / "trial-0001"), "--epochs", "2", "--quiet",
                 "--no-report"]) == 0
    capsys.readouterr()
    assert main(["compare", *map(str, sorted(out.glob("trial-*")))]) == 0
    table = capsys.readouterr().out
    assert all(f"trial-{t.number:04d}" in table for t in study.trials)

    # best.toml is the best trial's config, which varfam train --config takes as it is
    best = study.best_trial
    cfg = RunConfig.from_toml(out / "best.toml")
    base_cfg = RunConfig.from_toml(base)
    assert cfg == SearchSpace.read(space, base_cfg).apply(base_cfg, best.params)
    page = (out / "study.html").read_text()
    for heading in ("Optimization history", "Parameter importances", "Parallel coordinates",
                    "what pruning saw"):
        assert heading in page
    assert page.count("data:image/png;base64") >= 3 and "http" not in page.split("<body>")[1]


def test_multi_objective_study_gives_the_pareto_front(files, tmp_path) -> None:
    import varfam

    base, space = files
    study = varfam.tune(base, space, n_trials=3, out=tmp_path / "pareto",
                        objective="elbo,time", sampler="random", seed=1)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    front = {t.number for t in study.best_trials}
    assert front and {int(p.stem[6:]) for p in (tmp_path / "pareto/pareto").glob("*.toml")} \
        == front
    page = (tmp_path / "pareto" / "study.html").read_text()
    assert "<h2>Pareto front</h2><img" in page


def test_log_likelihood_objective(files, tmp_path) -> None:
    """The IS log p(x) of the best weights on the validation rows: above their ELBO."""
    import varfam

    base, space = files
    study = varfam.tune(base, space, n_trials=2, out=tmp_path / "ll",
                        objective="log-likelihood", iw=20, sampler="random", seed=0)
    for t in study.trials:
        assert t.state.name == "COMPLETE"
        assert t.value > t.user_attrs["validation_elbo"] - 0.5


def test_search_space_entries() -> None:
    base = RunConfig.from_dict({"data": {"source": "digits"}, "train": {"validation": 50}})
    space = SearchSpace.from_dict(
        {"model": {"hidden": [[64], [128, 64], 32], "prior": ["standard", "vamp"],
                   "prior_options": {"vamp": {"components": {"low": 10, "high": 50,
                                                             "step": 10}}}},
         "train": {"objective": ["elbo", "iwae"], "objective_options": {
             "elbo": {"beta": {"low": 0.5, "high": 2.0}}, "iwae": {"k": [2, 5]}}}}, base)
    by = {p.name: p for p in space.params}
    assert by["model.hidden"].choices == ("64", "128,64", "32")
    assert by["model.prior_options.vamp.components"].when == ("prior", "vamp")
    assert by["model.prior_options.vamp.components"].kind == "int"
    cfg = space.apply(base, {"model.hidden": "128,64", "train.objective": "iwae",
                             "train.objective_options.iwae.k": 5})
    assert cfg.model.hidden == (128, 64)
    assert cfg.train.objective_options == {"k": 5}


@pytest.mark.parametrize("space, message", [
    ({"model": {"lattent_dim": {"low": 2, "high": 8}}},
     "unknown field 'lattent_dim' in [model] (did you mean 'latent_dim'?)"),
    ({"modle": {"latent_dim": [2, 4]}}, "unknown section [modle] (did you mean 'model'?)"),
    ({"train": {"lr": {"low": 1e-2, "high": 1e-4}}}, "low (0.01) must be below high (0.0001)"),
    ({"train": {"lr": {"low": 0.0, "high": 1e-2, "log": True}}}, "a log range needs low > 0"),
    ({"train": {"lr": {"low": 0.0, "high": 1e-2}}}, "train.lr = 0.0 does not make a valid "
                                                    "config: lr must be positive"),
    ({"model": {"latent_dim": {"low": 2.5, "high": 8}}}, "is a whole number"),
    ({"model": {"latent_dim": {"low": 2, "high": 8, "stp": 2}}},
     "unknown key 'stp' in the range (did you mean 'step'?)"),
    ({"model": {"family": []}}, "model.family lists no choices"),
    ({"model": {"family": ["diagonal", "iaff"]}}, "unknown family 'iaff' (did you mean 'iaf'?)"),
    ({"model": {"family": ["diagonal", "iaf"], "family_options": {
        "flow_steps": [1, 2]}}}, "family 'diagonal' takes no option 'flow_steps'"),
    ({"model": {"latent_dim": 4}}, "give a range {low = …, high = …} or a list of choices"),
    ({"model": {"data_shape": [[1, 8, 8]]}}, "model.data_shape cannot be searched"),
    ({}, "the search space is empty"),
])
def test_bad_spaces_end_in_one_line(space, message) -> None:
    from varfam.errors import VarfamError

    base = RunConfig.from_dict({"data": {"source": "digits"}, "train": {"validation": 50}})
    with pytest.raises(VarfamError) as e:
        SearchSpace.from_dict(space, base)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_time_limit_on_the_cpu_clock(files, tmp_path, monkeypatch) -> None:
    """``time_clock="cpu"`` counts this process's CPU time: a study whose wall clock runs
    but whose CPU clock does not keeps starting trials; "wall" stops after the first."""
    import varfam
    from varfam.errors import VarfamError
    from varfam.integrations import tune as tune_module

    base, space = files
    ticks = iter(range(0, 10_000, 50))  # the fake wall clock: 50 s more at each reading
    monkeypatch.setitem(tune_module.CLOCKS, "wall", lambda: float(next(ticks)))
    monkeypatch.setitem(tune_module.CLOCKS, "cpu", lambda: 0.0)  # no CPU time passes
    wall = varfam.tune(base, space, n_trials=3, time_limit=1.0, out=tmp_path / "wall", seed=0)
    cpu = varfam.tune(base, space, n_trials=3, time_limit=1.0, time_clock="cpu",
                      out=tmp_path / "cpu", seed=0)
    assert len(wall.trials) == 1 and len(cpu.trials) == 3
    with pytest.raises(VarfamError, match="unknown time clock 'gpu'; choose from wall, cpu"):
        varfam.tune(base, space, n_trials=1, time_clock="gpu", out=tmp_path / "bad")
