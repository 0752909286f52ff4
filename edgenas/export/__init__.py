"""ONNX export, verification against PyTorch, and latency measurement of the export."""
