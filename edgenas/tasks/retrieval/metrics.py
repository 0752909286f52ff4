"""Retrieval metrics: mAP, Recall@k and CMC rank-k of query embeddings against a gallery.

Why vectorised torch rather than scikit-learn: `sklearn.metrics.average_precision_score`
scores one query at a time (a Python loop over thousands of queries, each re-sorting the
gallery); here a chunk of queries is ranked with one matrix product and one sort. The
tests check the result against scikit-learn query by query.

Definitions (the ones used in re-identification and deep-metric-learning papers):
- similarity: cosine (embeddings are L2-normalised first); the gallery is ranked by
  decreasing similarity; ties keep gallery order (sklearn would group tied scores, so
  the two agree exactly when scores are distinct, as they are for float embeddings);
- AP of a query: mean over its relevant gallery items (same id) of the precision at the
  rank of that item; mAP: mean AP over queries;
- Recall@k = CMC rank-k: share of queries with at least one relevant item in the top k.
  Both names are reported because papers use both for the same number.
Queries whose id has no gallery item cannot be scored and are counted, not averaged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def retrieval_metrics(
    query: torch.Tensor,
    query_ids: torch.Tensor,
    gallery: torch.Tensor,
    gallery_ids: torch.Tensor,
    ks: Sequence[int] = (1, 5),
    chunk: int = 256,
) -> dict[str, float | int]:
    """mAP, recall@k / cmc_rank{k} for every k in `ks`, and the counts they were computed over."""
    if len(query) != len(query_ids) or len(gallery) != len(gallery_ids):
        raise ValueError("embeddings and ids must have the same length")
    if len(gallery) == 0 or len(query) == 0:
        raise ValueError("need at least one query and one gallery item")
    q = F.normalize(query.detach().float(), dim=1)
    g = F.normalize(gallery.detach().float(), dim=1)
    q_ids, g_ids = query_ids.reshape(-1), gallery_ids.reshape(-1)
    ranks = torch.arange(1, len(g) + 1, dtype=torch.float64)
    ap_sum, scored = 0.0, 0
    hit_counts = dict.fromkeys(ks, 0)
    for lo in range(0, len(q), chunk):
        sim = q[lo : lo + chunk] @ g.t()
        order = torch.sort(sim, dim=1, descending=True, stable=True).indices
        hits = g_ids[order] == q_ids[lo : lo + chunk, None]  # [b, G]: relevant at each rank
        n_rel = hits.sum(1)
        ok = n_rel > 0
        hits, n_rel = hits[ok], n_rel[ok]
        h = hits.to(torch.float64)
        precision_at_hits = (h.cumsum(1) / ranks) * h
        ap_sum += float((precision_at_hits.sum(1) / n_rel).sum())
        scored += int(ok.sum())
        for k in ks:
            hit_counts[k] += int(hits[:, :k].any(1).sum())
    out: dict[str, float | int] = {"map": ap_sum / scored if scored else float("nan")}
    for k in ks:
        out[f"recall@{k}"] = hit_counts[k] / scored if scored else float("nan")
        out[f"cmc_rank{k}"] = out[f"recall@{k}"]
    out.update(queries=scored, unscored_queries=len(q) - scored, gallery=len(g))
    return out
