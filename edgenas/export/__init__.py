"""ONNX export of a network and its check against PyTorch.

`edgenas.export.export_model` (the `edgenas export` command) is not imported here: it
depends on `edgenas.cost`, which itself uses this package for ONNX latency.
"""

from edgenas.export.onnx import ExportError, export_onnx, input_spec, onnx_session, verify_onnx

__all__ = ["ExportError", "export_onnx", "input_spec", "onnx_session", "verify_onnx"]
