"""Adapters from varfam to other libraries' APIs (scikit-learn), thin shells over varfam's own.

Each adapter lives in a module named after the library it serves and imports that
library only there: ``from varfam.integrations.sklearn import VAEOutlierDetector``.
"""
