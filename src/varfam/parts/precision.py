"""Devices and numeric precision: bf16 autocast for training, fp32 for densities.

Networks run under bf16 autocast where the hardware has fast bf16 matrix
products (AVX-512 BF16 / AMX on CPUs, Ampere or newer GPUs). Distributions are
always built and evaluated in fp32 (see :func:`fp32`), and evaluation never
uses autocast.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from varfam.errors import VarfamError

__all__ = ["resolve_device", "bf16_supported", "use_bf16", "autocast", "fp32", "network_precision"]


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VarfamError(
            "--device cuda was asked for but no CUDA GPU is available; use --device cpu"
        )
    return torch.device(name)


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` has fast bf16 matrix products."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - older builds
        return False


def use_bf16(precision: str, device: torch.device) -> bool:
    """Resolve ``auto|bf16|fp32`` for ``device``."""
    if precision == "fp32":
        return False
    if precision == "bf16":
        return True
    return bf16_supported(device)


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``enabled``, else a no-op."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


#: Device types whose autocast :func:`fp32` has suspended, innermost last (see
#: :func:`network_precision`).
_suspended: list[str] = []


#: The context :func:`fp32` returns where no autocast is active (reusable: it holds no state).
_NOTHING_TO_SUSPEND = contextlib.nullcontext()
_AUTOCAST_DEVICE_TYPES = ("cpu", "cuda")


def fp32(device_type: str | None = None) -> contextlib.AbstractContextManager:
    """Suspend autocast (if active) so that densities are computed in fp32.

    ``device_type``: the autocast to suspend (``"cpu"``, ``"cuda"``); ``None``: every
    one that is active, for callers that hold no tensor to ask. Where none is active
    (evaluation, fp32 training) it returns a shared no-op context at once: the hot
    loop enters this context a few times per step.
    """
    if device_type is not None:
        if not torch.is_autocast_enabled(device_type):
            return _NOTHING_TO_SUSPEND
        return _suspend(device_type)
    active = [t for t in _AUTOCAST_DEVICE_TYPES if torch.is_autocast_enabled(t)]
    if not active:
        return _NOTHING_TO_SUSPEND
    if len(active) == 1:
        return _suspend(active[0])
    stack = contextlib.ExitStack()  # pragma: no cover - autocast on two device types at once
    for t in active:
        stack.enter_context(_suspend(t))
    return stack


@contextlib.contextmanager
def _suspend(device_type: str) -> Iterator[None]:
    _suspended.append(device_type)
    try:
        with torch.autocast(device_type=device_type, enabled=False):
            yield
    finally:
        _suspended.pop()


@contextlib.contextmanager
def network_precision(device_type: str) -> Iterator[None]:
    """Inside :func:`fp32`, resume the bf16 autocast it suspended; elsewhere a no-op.

    For networks that a distribution runs while it is built or scored (the conditional
    layer of the hierarchical family and prior): their matrix products then run in
    bf16 during bf16 training, like the encoder's and decoder's, while evaluation,
    which never autocasts, stays in fp32. Their outputs should be cast back to fp32
    before they parameterize a density.
    """
    if _suspended and _suspended[-1] == device_type:
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
            yield
    else:
        yield
