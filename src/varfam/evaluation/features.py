"""A small feature network for measuring samples, trained inside varfam on the data's labels.

FID compares samples and data in the feature space of an Inception network trained on
ImageNet: its weights come from the internet, and on 28×28 grey digits its features
mean little. varfam trains its own instead, on the data set's own labels: a
LeNet-sized CNN for images (C, H, W), an MLP for vectors (D,), 64 features before the
classifying layer. Training is seeded and deterministic on one machine, and the
trained weights are cached under the user's cache folder
(``$VARFAM_CACHE``, else ``$XDG_CACHE_HOME/varfam``, else ``~/.cache/varfam``),
keyed by a SHA-256 of the training data and labels, so every run on the same data
is measured with the same features.

Where the data has **no labels**, the features are those of the same network left
untrained, with a fixed seed: random features, which still separate images of
different structure but weigh every direction alike. The extractor's
``description`` says which was used.

The numbers these features give compare models *on the same data set inside
varfam*; they are not the Inception FIDs of papers.

>>> import torch
>>> net = FeatureNet((1, 8, 8), n_classes=10)
>>> net.features(torch.rand(5, 1, 8, 8)).shape
torch.Size([5, 64])
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from varfam.errors import VarfamError

__all__ = [
    "FEATURE_DIM",
    "FeatureNet",
    "FeatureExtractor",
    "feature_extractor",
    "data_key",
    "cache_folder",
]

#: Width of the feature vector.
FEATURE_DIM = 64
#: Bump when the network or its training changes: old cache entries are then not used.
VERSION = 2
#: Optimizer steps of training (at least 2 epochs, at most 20).
STEPS = 1500


class FeatureNet(nn.Module):
    """Images (B, C, H, W) or vectors (B, D) → features (B, 64) → class logits (B, K).

    Images (LeNet-sized): a 5×5 and a 3×3 convolution (16 and 32 channels, each with
    a ReLU and a 2×2 max-pool), an adaptive average pool to 4×4, then 128 → 64 linear
    layers.
    Vectors: an MLP of widths 256, 256, 64. ``features`` is the 64-wide layer before
    its ReLU (closer to Gaussian than after it, which the Fréchet distance assumes),
    centred on the training data and divided by one common scale (:meth:`standardize`).
    """

    def __init__(self, data_shape: tuple[int, ...], n_classes: int) -> None:
        super().__init__()
        self.data_shape = tuple(data_shape)
        if len(self.data_shape) == 3:
            channels = self.data_shape[0]
            self.trunk = nn.Sequential(
                nn.Conv2d(channels, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
                nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
                nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                nn.Linear(32 * 16, 128), nn.ReLU(), nn.Linear(128, FEATURE_DIM),
            )
        else:
            width = math.prod(self.data_shape)
            self.trunk = nn.Sequential(
                nn.Flatten(), nn.Linear(width, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                nn.Linear(256, FEATURE_DIM),
            )
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(FEATURE_DIM, max(n_classes, 1)))
        #: centring and one common scale of the features, set by :meth:`standardize`
        self.register_buffer("shift", torch.zeros(FEATURE_DIM))
        self.register_buffer("scale", torch.ones(()))

    def features(self, x: Tensor) -> Tensor:
        """(B, *data_shape) → (B, 64), centred and scaled as :meth:`standardize` set."""
        return (self.trunk(x) - self.shift) / self.scale

    @torch.no_grad()
    def standardize(self, x: Tensor, batch_size: int = 1000) -> None:
        """Centre the features of the data ``x`` (N, *data_shape) and divide them by one
        common scale, their root mean square: the average feature has variance 1 on the
        training data, whatever the network's own scale. One scale for all keeps the
        geometry (FD only scales by a constant), and keeps KID's cubic kernel
        ``(a·b / 64 + 1)^3`` in the range it was designed for."""
        f = torch.cat([self.trunk(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
        self.shift.copy_(f.mean(0))
        self.scale.copy_((f - self.shift).square().mean().sqrt().clamp_min(1e-12))

    def forward(self, x: Tensor) -> Tensor:
        """(B, *data_shape) → class logits (B, K)."""
        return self.head(self.trunk(x))


@dataclass
class FeatureExtractor:
    """A feature network and what it is: ``kind`` is ``"classifier"`` (trained on the
    labels; ``accuracy`` on the test set where one was given) or ``"random"``."""

    net: FeatureNet
    kind: str
    key: str
    accuracy: float | None = None

    @property
    def description(self) -> str:
        if self.kind == "random":
            return ("random features: an untrained network with a fixed seed "
                    "(the data has no labels)")
        acc = f", test accuracy {100 * self.accuracy:.1f} %" if self.accuracy is not None else ""
        return f"classifier features: a network trained on the data's labels{acc}"

    @torch.no_grad()
    def __call__(self, x: Tensor, batch_size: int = 1000) -> Tensor:
        """Features of ``x`` (N, *data_shape): (N, 64) float64, on the CPU."""
        if tuple(x.shape[1:]) != self.net.data_shape:
            raise VarfamError(
                f"the feature network takes data of shape {self.net.data_shape}, "
                f"got {tuple(x.shape[1:])}"
            )
        if not torch.isfinite(x).all():
            raise VarfamError("sample quality needs complete, finite data (no NaN cells)")
        self.net.eval()
        return torch.cat([self.net.features(x[i:i + batch_size].float().cpu()).double()
                          for i in range(0, x.shape[0], batch_size)])


def cache_folder() -> Path:
    """``$VARFAM_CACHE``, else ``$XDG_CACHE_HOME/varfam``, else ``~/.cache/varfam``."""
    if os.environ.get("VARFAM_CACHE"):
        return Path(os.environ["VARFAM_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "varfam"


def data_key(x: Tensor, labels: Tensor | None, seed: int = 0, steps: int = STEPS) -> str:
    """SHA-256 (hex, 20 characters) of the data ``x`` (N, ...), its labels and the recipe."""
    digest = hashlib.sha256(f"varfam-features-v{VERSION};seed={seed};steps={steps};".encode())
    for t in (x, labels):
        if t is not None:
            t = t.detach().cpu().contiguous()
            digest.update(f"{t.dtype}:{tuple(t.shape)};".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:20]


def feature_extractor(
    x: Tensor,
    labels: Tensor | None = None,
    *,
    test: Tensor | None = None,
    test_labels: Tensor | None = None,
    seed: int = 0,
    steps: int | None = None,
    cache: str | Path | None = None,
) -> FeatureExtractor:
    """The feature network for data ``x`` (N, *data_shape) with int64 ``labels`` (N,).

    Trained (or read from ``cache``, default :func:`cache_folder`) on the first call
    for this data, on the rows whose label is known (not -1); with ``labels=None`` (or
    a single class) the untrained network of seed ``seed``. ``test``/``test_labels``:
    held-out data to report the accuracy on. ``steps``: optimizer steps of training
    (default :data:`STEPS`; within 2 to 20 epochs).
    """
    steps = STEPS if steps is None else steps
    x = x.float().cpu()
    if labels is not None and labels.numel() == x.shape[0]:  # -1: a hidden label
        x, labels = x[labels >= 0], labels[labels >= 0]
    labelled = labels is not None and labels.numel() > 1 and int(labels.max()) > 0
    key = data_key(x, labels if labelled else None, seed, steps)
    if not labelled:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = FeatureNet(tuple(x.shape[1:]), 1)
        net.eval().standardize(x)
        return FeatureExtractor(net, "random", key)
    assert labels is not None
    labels = labels.long().cpu()
    n_classes = int(labels.max()) + 1
    folder = Path(cache).expanduser() if cache is not None else cache_folder()
    weights, meta = folder / "features" / f"{key}.safetensors", folder / "features" / f"{key}.json"
    net = FeatureNet(tuple(x.shape[1:]), n_classes)
    found = _read_cached(net, weights, meta)
    if found is not None:
        return FeatureExtractor(net.eval(), "classifier", key, found.get("accuracy"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = FeatureNet(tuple(x.shape[1:]), n_classes)
        _train(net, x, labels, steps)
        net.standardize(x)
    accuracy = None
    if test is not None and test_labels is not None and test.shape[0]:
        with torch.no_grad():
            logits = torch.cat([net(test[i:i + 1000].float()) for i in range(0, len(test), 1000)])
        accuracy = float((logits.argmax(-1) == test_labels.long()).double().mean())
    _write_cached(net, weights, meta, {"accuracy": accuracy, "examples": int(x.shape[0]),
                                       "classes": n_classes, "version": VERSION})
    return FeatureExtractor(net.eval(), "classifier", key, accuracy)


def _train(net: FeatureNet, x: Tensor, labels: Tensor, steps: int, batch_size: int = 128) -> None:
    """Adam on cross-entropy for about ``steps`` steps (2 to 20 epochs)."""
    per_epoch = math.ceil(x.shape[0] / batch_size)
    epochs = min(max(math.ceil(steps / per_epoch), 2), 20)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(x.shape[0]).split(batch_size):
            loss = nn.functional.cross_entropy(net(x[idx]), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    net.eval()


def _read_cached(net: FeatureNet, weights: Path, meta: Path) -> dict | None:
    """Load cached weights into ``net``; None if there are none or they do not fit."""
    from safetensors.torch import load_file

    if not (weights.exists() and meta.exists()):
        return None
    try:
        info = json.loads(meta.read_text())
        net.load_state_dict(load_file(str(weights)))
    except Exception:  # a damaged cache entry is trained again, not an error  # noqa: BLE001
        return None
    return info if isinstance(info, dict) else {}


def _write_cached(net: FeatureNet, weights: Path, meta: Path, info: dict) -> None:
    from safetensors.torch import save_file

    from varfam.runs.files import atomic_write, write_text_atomic

    try:
        state = {k: v.contiguous() for k, v in net.state_dict().items()}
        atomic_write(weights, lambda tmp: save_file(state, tmp))
        write_text_atomic(meta, json.dumps(info) + "\n")
    except OSError:  # a cache that cannot be written only costs time
        pass
