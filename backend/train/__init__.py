"""Training scripts for our own `tiny` weights. They run on CPU and under `torchrun` unchanged.

CI never trains: it checks the shipped weights against the figures recorded in their model cards.
"""
