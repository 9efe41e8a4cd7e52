"""Method registry: config name -> class. Imports stay explicit so the list reads at a glance."""
from models.content_ae import ContentAE

METHODS = {
    "content_ae": ContentAE,
}


def build_method(cfg, device):
    try:
        cls = METHODS[cfg.method]
    except KeyError:
        raise ValueError(f"unknown method {cfg.method!r}; choose one of {sorted(METHODS)}") from None
    return cls(cfg, device)
