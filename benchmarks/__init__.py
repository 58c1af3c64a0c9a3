"""Side-by-side benchmarks of sieve_async against a Sieve simulator in another process.

Run ``python -m benchmarks --quick`` (small sizes, no thresholds) or ``python -m benchmarks
--full`` (the real sizes, a table of every figure against its target, and a plot).
"""
