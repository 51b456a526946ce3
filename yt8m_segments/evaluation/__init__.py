"""Scoring: the challenge metrics (MAP@K, GAP), evaluation of submissions,
models and caches, reports, and the simple baselines every figure stands
beside."""
