"""Pixel reconstruction losses (mean reduction over all elements)."""
import torch.nn.functional as F

RECON_LOSSES = {"mse": F.mse_loss, "l1": F.l1_loss}


def recon_loss(kind: str, x, y):
    try:
        return RECON_LOSSES[kind](x, y)
    except KeyError:
        raise ValueError(f"unknown reconstruction loss {kind!r}; choose one of {sorted(RECON_LOSSES)}") from None
