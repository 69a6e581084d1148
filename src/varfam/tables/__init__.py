"""What is particular to tables: imputation, synthetic rows and the table pictures.

Reading a table and its column types is data (:mod:`varfam.data.tables`,
:mod:`varfam.data.columns`); a table's likelihood is the ``mixed`` likelihood, a product
of per-column factors (:mod:`varfam.likelihoods.mixed`).
"""

from __future__ import annotations

from varfam.tables.imputation import Imputation, imputation_errors, impute, sample_table

__all__ = ["impute", "Imputation", "sample_table", "imputation_errors"]
