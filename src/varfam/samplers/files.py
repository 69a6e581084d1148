"""Samplers in files and run folders: ``STEM.safetensors`` beside ``STEM.json``.

The tensors of a fitted sampler (its ``state_dict``) go to safetensors; its name,
options, latent size, what fitting found and a fingerprint of the model's weights go
to a small JSON file, which also records the SHA-256 of the tensor file. Nothing is
pickled. In a run folder the pair is ``RUN/samplers/NAME.safetensors`` and
``RUN/samplers/NAME.json``; :func:`fitted_sampler` fits a sampler on first use and
loads it afterwards.

>>> import tempfile, torch, varfam
>>> model = varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(16,))
>>> run = tempfile.mkdtemp()
>>> gmm = fitted_sampler(run, model, "gmm", torch.rand(50, 1, 8, 8), options={"components": 2})
>>> again = fitted_sampler(run, model, "gmm")  # read back from RUN/samplers/gmm.*
>>> again.loaded, again.describe()
(True, 'gmm: 2 components (given)')
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor

from varfam.errors import VarfamError
from varfam.runs.files import atomic_write, write_text_atomic
from varfam.samplers.base import FORMAT, SAMPLERS, Sampler, check_serves, model_fingerprint

if TYPE_CHECKING:
    from varfam.config import RunConfig
    from varfam.model import VAE

__all__ = ["save_sampler", "load_sampler", "sampler_paths", "fitted_sampler", "run_sampler"]


def save_sampler(sampler: Sampler, stem: str | Path) -> tuple[Path, Path]:
    """Write ``STEM.safetensors`` (tensors) and ``STEM.json`` (config); returns both paths.

    The JSON records the SHA-256 of the tensor file, so a pair that does not belong
    together (or a damaged tensor file) is caught on loading. Each file is written
    under a temporary name and renamed, so a reader never sees half of one.
    """
    from safetensors.torch import save_file

    stem = Path(stem)
    tensors_path, config_path = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    state = {k: v.detach().cpu().contiguous() for k, v in sampler.state_dict().items()}
    atomic_write(tensors_path, lambda tmp: save_file(state, tmp))
    config = {**sampler.config(), "sha256": _file_sha256(tensors_path)}
    text = json.dumps(config, indent=1, sort_keys=True) + "\n"
    write_text_atomic(config_path, text)
    return tensors_path, config_path


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sampler_paths(run_dir: str | Path, name: str) -> tuple[Path, Path]:
    """``RUN/samplers/NAME.safetensors`` and ``RUN/samplers/NAME.json``."""
    folder = Path(run_dir) / "samplers"
    return folder / f"{name}.safetensors", folder / f"{name}.json"


def load_sampler(stem: str | Path, model: VAE) -> Sampler:
    """Read ``STEM.json`` and ``STEM.safetensors`` back into a sampler for ``model``.

    Anything wrong (a missing, damaged or mismatched file; a sampler fitted on other
    weights than ``model``'s) raises a one-line :class:`VarfamError` that says to refit.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    stem = Path(stem)
    tensors_path, config_path = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    fix = "delete it or refit (--refit, or refit=True)"
    try:
        config = json.loads(config_path.read_text())
        name, options = config["sampler"], dict(config["options"])
        latent_dim, info = int(config["latent_dim"]), dict(config["info"])
        fingerprint, sha = config.get("model"), str(config["sha256"])
        if config.get("format") != FORMAT:
            raise ValueError(f"format {config.get('format')!r}, not {FORMAT}")
    except FileNotFoundError:
        raise VarfamError(f"{config_path} does not exist; fit the sampler first") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise VarfamError(f"{config_path} is not a readable sampler config ({detail}); "
                          f"{fix}") from None
    try:
        if _file_sha256(tensors_path) != sha:
            raise ValueError("its SHA-256 is not the one its .json records")
        state = load_file(str(tensors_path))
    except FileNotFoundError:
        raise VarfamError(f"{tensors_path} does not exist; {fix}") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise VarfamError(f"{tensors_path} is not a readable sampler ({detail}); {fix}") from None
    sampler: Sampler = SAMPLERS.build(name, options=options)
    check_serves(sampler, model)
    if sampler.needs_fit:
        if latent_dim != model.latent_dim or fingerprint != model_fingerprint(model):
            raise VarfamError(
                f"{config_path} was fitted on other weights than this model's (the run was "
                f"trained again); refit it (--refit, or refit=True)"
            )
        sampler.build(latent_dim, info)
        try:
            sampler.load_state_dict(state)
        except RuntimeError as e:
            raise VarfamError(f"{tensors_path} does not match {config_path.name} "
                              f"({str(e).splitlines()[0]}); {fix}") from None
    sampler.latent_dim, sampler.info, sampler.fingerprint = latent_dim, info, fingerprint
    sampler.bind(model)
    return sampler


def fitted_sampler(
    run_dir: str | Path,
    model: VAE,
    name: str,
    data: Tensor | None = None,
    refit: bool = False,
    *,
    labels: Tensor | None = None,
    options: dict[str, Any] | None = None,
) -> Sampler:
    """The sampler ``name`` of a run: loaded from ``RUN/samplers/`` if it is there, else
    fitted on ``data`` (N, *data_shape) (the run's training inputs) and saved there.

    ``refit``: fit again even if a saved one exists. ``options``: the sampler's options
    (``components`` of ``gmm``...), used when fitting; a saved sampler with other
    options is refused (refit to change them). ``labels``: the labels (N,) of ``data``
    for a model conditioned on labels. The prior sampler needs no fitting and writes
    nothing. The returned sampler's ``loaded`` attribute tells which happened.
    """
    cls = SAMPLERS.get(name)
    sampler: Sampler
    if not cls.needs_fit:
        sampler = SAMPLERS.build(name, options=options).fit(model)
        sampler.loaded = False
        return sampler
    stem = Path(run_dir) / "samplers" / name
    tensors_path, config_path = sampler_paths(run_dir, name)
    if not refit and config_path.exists():
        sampler = load_sampler(stem, model)
        wanted = SAMPLERS.build(name, options=options).options()
        if options and wanted != sampler.options():
            changed = sorted(k for k in wanted if wanted[k] != sampler.options().get(k))
            raise VarfamError(
                f"{config_path} was fitted with other options ({', '.join(changed)}); refit it "
                "(--refit, or refit=True) to change them"
            )
        sampler.loaded = True
        return sampler
    if data is None:
        raise VarfamError(f"sampler '{name}' is not fitted in {run_dir}; give data to fit it on")
    sampler = SAMPLERS.build(name, options=options)
    check_serves(sampler, model)  # before encoding a whole data set
    sampler.fit(model, data, labels)
    save_sampler(sampler, stem)
    sampler.loaded = False
    return sampler


def run_sampler(
    run_dir: str | Path,
    model: VAE,
    cfg: RunConfig,
    name: str,
    *,
    refit: bool = False,
    options: dict[str, Any] | None = None,
) -> Sampler:
    """:func:`fitted_sampler` for a saved run (``varfam sample RUN --sampler NAME``).

    Fitting reads the run's own training inputs, as its encoder saw them (binarized
    with the run's seed where the run binarizes), and their labels for a run
    conditioned on labels; they are read only when the sampler has to be fitted.
    ``run_dir`` may be a Hub run (``hf://USER/REPO``): its samplers go to its local copy.
    """
    from varfam.runs.folder import run_dataset, scored_inputs
    from varfam.runs.hub import resolve_run

    run_dir = resolve_run(run_dir)
    data = labels = None
    if SAMPLERS.get(name).needs_fit and (refit or not sampler_paths(run_dir, name)[1].exists()):
        check_serves(SAMPLERS.build(name, options=options), model)  # before reading the data
        ds = run_dataset(cfg)
        data = scored_inputs(ds, cfg.train, "train")
        labels = ds.train_labels if model.uses_labels else None
    return fitted_sampler(run_dir, model, name, data, refit, labels=labels, options=options)
