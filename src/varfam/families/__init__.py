"""Variational families q(z|x), one module per kind; each registers itself by name.

Every module of this package is imported here, so a new family is one new file
with a ``@FAMILIES.register(...)`` class.
"""

import importlib
import pkgutil

from varfam.families.base import Family
from varfam.families.gaussian import DiagonalGaussian

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["Family", "DiagonalGaussian"]
