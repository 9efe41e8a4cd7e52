"""Method registry: config name -> class. Imports stay explicit so the list reads at a glance."""
from models.content_ae import ContentAE
from models.face_nets import FaceNets
from models.g2g import G2G
from models.id_mapper import IdMapper
from models.mad import MAD
from models.mask_ct import MaskContentTransfer
from models.stylegan2 import StyleGAN2

METHODS = {
    "content_ae": ContentAE,
    "mask_ct": MaskContentTransfer,
    "stylegan2": StyleGAN2,
    "face_nets": FaceNets,
    "id_mapper": IdMapper,
    "g2g": G2G,
    "mad": MAD,
}


def build_method(cfg, device):
    try:
        cls = METHODS[cfg.method]
    except KeyError:
        raise ValueError(f"unknown method {cfg.method!r}; choose one of {sorted(METHODS)}") from None
    return cls(cfg, device)
