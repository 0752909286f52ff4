"""Deployment-compact ONNX files: the same graph and tensors without what a device never reads.

Exporters and quantizers name every tensor and node after its source (`blocks.0.edges.3_0.1.
weight_bias_quantized_scale`), annotate intermediate shapes (`value_info`) and attach doc
strings and metadata; in a small INT8 network these records are a large share of the file
(about a quarter of a 130 KB NB201 file), so `model_bytes` would partly measure names. Here
tensors and nodes get short unique names (the graph's input and output names, which callers
feed and read, are kept), and shape annotations (onnxruntime infers them again), doc strings and
per-tensor/per-node/graph metadata are dropped. Operators, attributes, initializer data, order
and the model's own metadata (`edgenas.*`) are untouched, so outputs are bit-identical.
"""

from __future__ import annotations

import os
import string
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

_FIRST = string.ascii_letters + "_"
_REST = _FIRST + string.digits


def short_name(i: int) -> str:
    """The `i`-th shortest C identifier: a ... Z, _, aa, ba ... (distinct for distinct `i` >= 0)."""
    name, i = _FIRST[i % len(_FIRST)], i // len(_FIRST)
    while i:
        i -= 1
        name, i = name + _REST[i % len(_REST)], i // len(_REST)
    return name


def compact_model(model: Any) -> Any:
    """Make the `onnx.ModelProto` deployment-compact in place (see the module docstring); returns it."""
    graph = model.graph
    kept = {v.name for v in (*graph.input, *graph.output)}
    tensors: dict[str, str] = {"": ""} | {n: n for n in kept}  # "" marks an omitted optional input
    free = (n for i in range(1 << 62) if (n := short_name(i)) not in kept)

    def tensor(name: str) -> str:
        if name not in tensors:
            tensors[name] = next(free)
        return tensors[name]

    nodes = (short_name(i) for i in range(1 << 62))
    model.ClearField("doc_string")
    _compact_graph(graph, tensor, lambda: next(nodes))
    return model


def _compact_graph(graph: Any, tensor: Callable[[str], str], node_name: Callable[[], str]) -> None:
    """Rename, and drop annotations, in `graph` and its subgraphs (one name map for all: outer names stay valid)."""
    for field in ("doc_string", "value_info", "metadata_props"):
        graph.ClearField(field)
    for v in (*graph.input, *graph.output, *graph.initializer):
        v.name = tensor(v.name)
        v.ClearField("doc_string")
        v.ClearField("metadata_props")
    for s in graph.sparse_initializer:
        s.values.name, s.indices.name = tensor(s.values.name), tensor(s.indices.name)
    for node in graph.node:
        node.name = node_name()
        node.ClearField("doc_string")
        node.ClearField("metadata_props")
        node.input[:] = [tensor(n) for n in node.input]
        node.output[:] = [tensor(n) for n in node.output]
        for attr in node.attribute:
            attr.ClearField("doc_string")
            for sub in (*([attr.g] if attr.HasField("g") else []), *attr.graphs):
                _compact_graph(sub, tensor, node_name)


def compact_onnx(path: str | Path) -> int:
    """Rewrite the ONNX file at `path` deployment-compact (checked, atomically); returns its bytes before."""
    import onnx

    path = Path(path)
    before = path.stat().st_size
    model = compact_model(onnx.load(str(path)))
    onnx.checker.check_model(model)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(model.SerializeToString())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return before
