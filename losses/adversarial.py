"""Adversarial losses on discriminator logits."""
import torch
import torch.nn.functional as F


def bce_logits(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Binary cross-entropy against a constant float target (0.0 or 1.0, or 0.5), on logits."""
    return F.binary_cross_entropy_with_logits(logits.float(), torch.full_like(logits.float(), float(target)))


GAN_MODES = ("ns", "lsgan", "hinge")


def gan_loss(logits: torch.Tensor, real: bool, mode: str = "ns", for_disc: bool = True) -> torch.Tensor:
    """One GAN loss term on discriminator ``logits`` that should read "real" (``real=True``) or "fake".

    - ``ns`` (non-saturating; the original GAN's "vanilla" BCE): -log sigmoid(l) for real, -log(1 - sigmoid(l))
      for fake; the generator uses ``real=True`` on its samples (= softplus(-l), StyleGAN2's form).
    - ``lsgan``: (l - 1)^2 for real, l^2 for fake (Mao et al.; CycleGAN's default).
    - ``hinge``: the discriminator's relu(1 - l) for real, relu(1 + l) for fake; the generator's -l
      (``for_disc=False``).
    All are means over every logit, computed in fp32."""
    logits = logits.float()
    if mode == "ns":
        return bce_logits(logits, 1.0 if real else 0.0)
    if mode == "lsgan":
        return F.mse_loss(logits, torch.full_like(logits, 1.0 if real else 0.0))
    if mode == "hinge":
        if not for_disc:
            return -logits.mean()
        return F.relu(1.0 - logits).mean() if real else F.relu(1.0 + logits).mean()
    raise ValueError(f"GAN loss mode must be one of {GAN_MODES}, got {mode!r}")


def r1_penalty(outputs: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): E_x |grad_x D(x)|^2 over the real ``inputs`` (which require grad), summed over
    all non-batch dims, averaged over the batch; differentiable (``create_graph``). Multiply by gamma / 2."""
    (grad,) = torch.autograd.grad(outputs.float().sum(), inputs, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


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
