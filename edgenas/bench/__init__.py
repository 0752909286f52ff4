"""Benchmarks that produce ground truth and figures: trained accuracies, proxy correlations."""
