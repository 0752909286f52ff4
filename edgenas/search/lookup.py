"""DCA-NAS's lookup graph (LUG): from a device budget K_d to the search budget K_d' that lands the
derived arch inside K_d.

Dutta et al., PReMI 2023 (Sec. 3.2, appendix B): the softmax-weighted cost a search constrains
is not the cost of the arch derived from it, so searches are run at several search budgets K_d'
and the derived arch's exact cost is recorded against each; a later search looks up the K_d'
whose derived cost is the one wanted. Here one graph holds a curve per budget kind
(`max_params`, `max_flops`, ...), made by `edgenas search --method dca --calibrate` and named
by a DCA option or a device profile (`lookup_graph`).

Reading a curve: the derived costs are made non-decreasing in the search budget (isotonic
regression, `scipy.optimize.isotonic_regression`: a tighter search budget should not give a
costlier arch, and a single search is noisy), then inverted by linear interpolation. A goal
under every calibrated derived cost scales the first point down proportionally (towards a
fit); a goal over them all takes the largest calibrated search budget, not an extrapolation
(derived archs that all come out cheap say nothing of how far a looser budget may go).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import isotonic_regression

from edgenas.core.atomic import atomic_write_json
from edgenas.core.errors import ConfigError

SCHEMA = 1


def search_budget_for(points: list[tuple[float, float]], goal: float) -> float:
    """The search budget whose derived exact cost is `goal`, from (search budget, derived cost) points."""
    if not points:
        raise ValueError("a lookup curve needs at least one (search budget, derived cost) point")
    pts = sorted((float(b), float(c)) for b, c in points)
    x = np.array([b for b, _ in pts])
    y = isotonic_regression(np.array([c for _, c in pts]), increasing=True).x
    # one search budget per derived cost: a flat run of the fit is read at its mean budget
    levels, inverse = np.unique(y, return_inverse=True)
    budgets = np.array([x[inverse == i].mean() for i in range(len(levels))])
    if goal <= levels[0]:
        return float(budgets[0] * goal / levels[0]) if levels[0] > 0 else float(budgets[0])
    if goal >= levels[-1]:
        return float(budgets[-1])
    return float(np.interp(goal, levels, budgets))


@dataclass
class LookupGraph:
    """Derived exact cost against search budget, per budget kind, for one space, dataset and shape."""

    space: str
    dataset: str
    target_shape: dict[str, Any]
    points: dict[str, list[tuple[float, float]]]  # budget name -> [(search budget, derived exact cost)]
    options: dict[str, Any] = field(default_factory=dict)  # the calibration's search options

    def search_budget(self, name: str, device_budget: float, target: float) -> float | None:
        """K_d' for the device budget `name` = K_d, aiming the derived arch at `target` × K_d (None: not calibrated)."""
        pts = self.points.get(name)
        return search_budget_for(pts, target * device_budget) if pts else None

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(Path(path), {"schema": SCHEMA, "kind": "dca-lookup-graph", **asdict(self)})

    @classmethod
    def load(cls, path: str | Path) -> LookupGraph:
        path = Path(path).expanduser()
        make = "make one with `edgenas search --method dca --calibrate`"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"lookup graph {path}: no such file; {make}") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"lookup graph {path}: not readable JSON ({exc}); {make}") from None
        if not isinstance(data, dict) or data.get("kind") != "dca-lookup-graph":
            raise ConfigError(f"lookup graph {path}: not a DCA-NAS lookup graph; {make}")
        points = {k: [(float(b), float(c)) for b, c in v] for k, v in data["points"].items()}
        return cls(data["space"], data["dataset"], data["target_shape"], points, data.get("options", {}))

    def check_matches(self, space: str, dataset: str, target_shape: dict[str, Any], path: str) -> None:
        """A `ConfigError` if the graph was calibrated for another space, dataset or deployed shape."""
        theirs = (self.space, self.dataset, self.target_shape)
        if theirs != (space, dataset, target_shape):
            raise ConfigError(
                f"lookup graph {path} was calibrated for space {self.space}, dataset {self.dataset}, shape "
                f"{self.target_shape}, not {space}, {dataset}, {target_shape}; calibrate one for this search"
            )
