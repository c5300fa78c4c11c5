"""The result type every metric returns, so a missing weight file is a message, not a traceback."""

from __future__ import annotations

from dataclasses import dataclass

import torch

FETCH_HINT = "run `python data_scripts/fetch_metric_weights.py` (needs internet) to fetch the weights"


@dataclass
class MetricResult:
    """A metric's value, or why it could not be computed (``value`` is None then)."""

    name: str
    value: float | None = None
    unavailable_reason: str | None = None
    per_item: torch.Tensor | None = None
    higher_is_better: bool | None = None

    @property
    def available(self) -> bool:
        return self.value is not None

    def format(self, digits: int = 3) -> str:
        if not self.available:
            return "unavailable"
        return f"{self.value:.{digits}f}"

    def __str__(self) -> str:
        if not self.available:
            return f"{self.name}: unavailable ({self.unavailable_reason})"
        arrow = {True: " (higher is better)", False: " (lower is better)", None: ""}[self.higher_is_better]
        return f"{self.name}: {self.value:.4f}{arrow}"

    def as_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "unavailable_reason": self.unavailable_reason}


def unavailable(name: str, reason: str) -> MetricResult:
    return MetricResult(name=name, unavailable_reason=reason)
