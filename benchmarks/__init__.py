"""Performance harness: is the engine, not our code, the bottleneck? Run `python -m benchmarks`.

Each figure module exposes `run(...) -> Figure`; __main__ prints one line per figure and a JSON line.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Figure:
    """One measured figure, its target, and the readable lines that explain it."""

    name: str
    value: float
    target: str  # e.g. ">= 5" or "< 0.01"
    details: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        op, bound = self.target.split()
        bound_value = float(bound)
        return {
            ">=": self.value >= bound_value,
            ">": self.value > bound_value,
            "<=": self.value <= bound_value,
            "<": self.value < bound_value,
            "==": self.value == bound_value,
        }[op]

    def line(self) -> str:
        return f"{self.name} {self.value:.4g} (target {self.target}) {'ok' if self.ok else 'MISSED'}"
