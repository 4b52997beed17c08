"""Benchmark scripts of recbole-iacn: ``reproduce`` (paper tables), ``dain_ranking`` (DAIN top-k
ranking against RecBole's BPR, NeuMF and DeepFM) and ``performance`` (throughput and memory ratios).
See ``benchmarks/README.md``."""
