"""Benchmarks: `make bench` and `make layer-size` run them.

Each also runs alone as `.venv/bin/python -m bench.NAME` from the repository root, in the venv that
`make venv` made: its podslots-dev.pth puts layers/podslots (the `podslots` package) and the
repository root on sys.path, so no PYTHONPATH is needed.
"""
