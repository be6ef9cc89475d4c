"""Client scripts and the timed stage server of `benchmarks/bench_peers.py`."""
