"""Shared engine: configs, checkpoints, distributed helpers and the training loop."""
