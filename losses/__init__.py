"""Loss functions shared by the methods (plain functions; weights live in the configs)."""
from losses.adversarial import bce_logits, latent_confusion_loss
from losses.recon import RECON_LOSSES, recon_loss

__all__ = ["RECON_LOSSES", "recon_loss", "bce_logits", "latent_confusion_loss"]
