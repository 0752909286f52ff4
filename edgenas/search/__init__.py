"""Architecture search: from a space and a budget (or a teacher) to candidate archs.

- `screen`: training-free ranking (`edgenas screen`): random or AZ-NAS `evolution`
  candidates, costed, scored by proxies, latency checked last.
- `bilevel`: the warm-up-then-search loop shared by the differentiable methods, with its
  per-epoch checkpoint and `SearchOptions` (a method's options, ablation-only ones under
  `experimental`).
- `methods/`: one file per differentiable method, registered by name in
  `edgenas.search.methods.METHODS`: `dca` (DCA-NAS, one cell inside a device's budgets)
  and `dnad` (DNAD, a Pareto set from one shrinking, distilling search).
- `derive`: from DCA-NAS's op probabilities to one arch inside every budget.
- `pareto`: non-dominated filter and 2-D hypervolume (DNAD's harvest, benchmarks).
- `run`: `search()` / `resume_search()`, the library function behind `edgenas search`.
The methods, their options and what was measured: docs/methods/.
"""
