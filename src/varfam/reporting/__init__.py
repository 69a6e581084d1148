"""What a person looks at: pictures (:mod:`~varfam.reporting.pictures`), the run's page
``report.html`` (:mod:`~varfam.reporting.page`) and the latent-space explorer
(:mod:`~varfam.reporting.explore`)."""

from __future__ import annotations

__all__: list[str] = []
