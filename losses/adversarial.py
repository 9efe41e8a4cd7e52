"""Adversarial losses on discriminator logits."""
import torch
import torch.nn.functional as F


def bce_logits(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Binary cross-entropy against a constant float target (0.0 or 1.0, or 0.5), on logits."""
    return F.binary_cross_entropy_with_logits(logits.float(), torch.full_like(logits.float(), float(target)))


# Targets the encoder aims the discriminator at, per domain (a = has the attribute, b = lacks it).
CONFUSION_TARGETS = {
    # Press et al. / Mokady et al. code: both domains' common codes are pushed to "b" (label 0).
    "b": (0.0, 0.0),
    # Flipped labels (the usual GAN generator loss).
    "flip": (0.0, 1.0),
    # Maximum-confusion target: the discriminator should say 0.5 for both.
    "half": (0.5, 0.5),
}


def latent_confusion_loss(logits_a: torch.Tensor, logits_b: torch.Tensor, mode: str = "b") -> torch.Tensor:
    """Encoder-side domain-confusion loss on the latent discriminator's logits."""
    try:
        ta, tb = CONFUSION_TARGETS[mode]
    except KeyError:
        raise ValueError(f"unknown confusion target {mode!r}; choose one of {sorted(CONFUSION_TARGETS)}") from None
    return bce_logits(logits_a, ta) + bce_logits(logits_b, tb)
