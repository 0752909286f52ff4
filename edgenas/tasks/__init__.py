"""Tasks beyond classification that reuse the trainer: image retrieval (with CDD)."""
