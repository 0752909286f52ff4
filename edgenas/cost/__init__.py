"""Cost model: what a network costs on a device (params, FLOPs, peak memory, latency).

Conventions are those of `edgenas.core.cost` (`FLOPS_CONVENTION`); every figure is
measured from the network as PyTorch runs it, not read from a table of layer formulas.
"""

from edgenas.core.cost import FLOPS_CONVENTION, Cost
from edgenas.cost.flops import count_flops
from edgenas.cost.latency import LatencyStats, measure_onnx_latency, measure_torch_latency
from edgenas.cost.measure import measure_cost
from edgenas.cost.memory import peak_activation_bytes
from edgenas.cost.params import count_params

__all__ = [
    "FLOPS_CONVENTION",
    "Cost",
    "LatencyStats",
    "count_flops",
    "count_params",
    "measure_cost",
    "measure_onnx_latency",
    "measure_torch_latency",
    "peak_activation_bytes",
]
