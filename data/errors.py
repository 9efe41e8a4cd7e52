"""The error type of the dataset readers, in a module of its own so every reader in ``data/`` can import it
without importing another reader (``data.folders`` and ``data.tables`` use each other's functions)."""


class DatasetLayoutError(ValueError):
    """A dataset folder or list that does not have the expected layout."""
