"""Method registry: config name -> class. Imports stay explicit so the list reads at a glance."""
from models.content_ae import ContentAE
from models.mask_ct import MaskContentTransfer

METHODS = {
    "content_ae": ContentAE,
    "mask_ct": MaskContentTransfer,
}


def build_method(cfg, device):
    try:
        cls = METHODS[cfg.method]
    except KeyError:
        raise ValueError(f"unknown method {cfg.method!r}; choose one of {sorted(METHODS)}") from None
    return cls(cfg, device)
