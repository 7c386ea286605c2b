"""Figures, ratios and their targets; the printed table and the final JSON line."""

import json
import math
import statistics
from dataclasses import asdict, dataclass, field


def percentile(values, pct: float) -> float | None:
    """Nearest-rank percentile (``pct`` in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(ours, baseline) -> float | None:
    if ours is None or not baseline:
        return None
    return ours / baseline


@dataclass
class Target:
    op: str  # ">=" or "<="
    bound: float

    def met(self, value) -> bool | None:
        if value is None:
            return None
        return value >= self.bound if self.op == ">=" else value <= self.bound

    def __str__(self):
        return f"{self.op} {self.bound:g}"


@dataclass
class Report:
    """What one run measured; keys look like ``embedded.auth.me_rps``."""

    figures: dict = field(default_factory=dict)  # key -> (value, unit)
    ratios: dict = field(default_factory=dict)  # key -> (value, Target | None)
    notes: list = field(default_factory=list)
    errors: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def figure(self, key: str, value, unit: str = "") -> None:
        self.figures[key] = (None if value is None else round(float(value), 4), unit)

    def ratio(self, key: str, value, target: Target | None = None) -> None:
        self.ratios[key] = (None if value is None else round(float(value), 4), target)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def error(self, key: str, text: str) -> None:
        self.errors[key] = text

    def as_json(self) -> str:
        return json.dumps(
            {
                "meta": self.meta,
                "figures": {k: {"value": v, "unit": u} for k, (v, u) in self.figures.items()},
                "ratios": {
                    k: {
                        "value": v,
                        "target": str(t) if t else None,
                        "met": t.met(v) if t else None,
                    }
                    for k, (v, t) in self.ratios.items()
                },
                "notes": self.notes,
                "errors": self.errors,
            },
            separators=(",", ":"),
        )

    def table(self) -> str:
        lines = [f"{'figure':<58} {'value':>14}  unit"]
        for key, (value, unit) in self.figures.items():
            lines.append(f"{key:<58} {_fmt(value):>14}  {unit}")
        lines.append("")
        lines.append(f"{'ratio':<58} {'value':>8}  {'target':<8} met")
        for key, (value, target) in self.ratios.items():
            met = target.met(value) if target else None
            mark = {True: "yes", False: "NO", None: "-"}[met]
            lines.append(f"{key:<58} {_fmt(value):>8}  {str(target or ''):<8} {mark}")
        for key, text in self.errors.items():
            lines.append(f"ERROR {key}: {text}")
        for text in self.notes:
            lines.append(f"note: {text}")
        return "\n".join(lines)


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3f}"


def as_dict(obj):
    return asdict(obj)
