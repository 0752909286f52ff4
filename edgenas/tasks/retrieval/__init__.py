"""Image retrieval: open/closed-set splits, metric losses, retrieval metrics, the embedding net,
capacity-dynamic distillation (CDD) and physical pruning, run as stages of the shared trainer.

`run_retrieval` is `edgenas retrieval` as a function; `make_options` validates its flat
keywords into `RetrievalOptions`.
"""

from edgenas.tasks.retrieval.api import run_retrieval
from edgenas.tasks.retrieval.options import RetrievalOptions, make_options

__all__ = ["RetrievalOptions", "make_options", "run_retrieval"]
