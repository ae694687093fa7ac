"""A simulated day (or week) of Terraform traffic under four policies, on one seeded trace.

`python -m bench.day --help`; the models and what each assumes are in bench/RESULTS.md.
"""
