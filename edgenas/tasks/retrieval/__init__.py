"""Image retrieval: open/closed-set splits, metric losses, retrieval metrics, the embedding net,
capacity-dynamic distillation (CDD) and physical pruning, run as stages of the shared trainer."""
