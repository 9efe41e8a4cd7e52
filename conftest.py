"""Makes the repository root importable for pytest (tests import core, data, models, metrics)."""
