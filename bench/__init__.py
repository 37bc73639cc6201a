"""Benchmarks of the engine and the app: ``python -m bench`` runs the suite and writes docs/PERFORMANCE.md
(bench/run.py); ``python -m bench.sampler_overhead`` measures the samplers' own overhead."""
