"""Loss functions shared by the methods (plain functions; weights live in the configs)."""
from losses.adversarial import GAN_MODES, bce_logits, gan_loss, latent_confusion_loss, r1_penalty
from losses.recon import RECON_LOSSES, recon_loss

__all__ = ["RECON_LOSSES", "recon_loss", "bce_logits", "latent_confusion_loss", "gan_loss", "r1_penalty", "GAN_MODES"]
