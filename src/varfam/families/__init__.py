"""Variational families q(z|x), one module per kind; each registers itself by name."""

from .base import Family
from .gaussian import DiagonalGaussian

__all__ = ["Family", "DiagonalGaussian"]
