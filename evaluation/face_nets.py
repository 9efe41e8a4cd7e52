"""Protocol of the ``face_nets`` method (the small identity and analysis nets): held-out identity verification,
landmark error and R^2 per pose / expression component on its synthetic test split (``metrics/face_scores.py``),
and how far the identity embedding moves when only identity, pose or expression changes (``emb_shift_*``).
"""
from __future__ import annotations

import numpy as np
import torch

from data.synthetic.labels import pose_expression_arrays
from metrics.face_scores import landmark_errors, r2_scores, verification
from models.nets.face_small import unit_to_pixels

POSE_NAMES = ("tx", "ty", "roll", "scale")
EXPRESSION_NAMES = ("smile", "mouth_open", "brow_raise")
BEST = ("verif_auc", "max")


@torch.no_grad()
def _predict(nets: dict, images: np.ndarray, batch_size: int, device) -> tuple[torch.Tensor, dict]:
    embs, outs = [], {"landmarks": [], "pose": [], "expression": []}
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(images[i:i + batch_size]).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        embs.append(nets["identity"](x).float().cpu())
        o = nets["analysis"](x)
        for k in outs:
            outs[k].append(o[k].float().cpu())
    return torch.cat(embs), {k: torch.cat(v) for k, v in outs.items()}


def evaluate_face_nets(nets: dict, dataset, batch_size: int = 256, device="cpu", max_images: int = 4000,
                       shift_images: int = 256) -> dict:
    """Scores of ``nets`` = {"identity", "analysis"} on the first ``max_images`` items of a synthetic
    dataset (``SyntheticFaces`` or ``FaceFactors``: needs ``images``, ``landmarks``, ``identities``,
    ``size`` and ``factors(i)``). Verification compares all pairs, so memory grows as ``max_images**2``."""
    for n in nets.values():
        n.eval()
    n = min(len(dataset), max_images)
    emb, out = _predict(nets, dataset.images[:n], batch_size, device)
    ids = torch.from_numpy(np.asarray(dataset.identities[:n]))
    res = {"images": len(ids), "identities": int(len(torch.unique(ids)))}
    res.update(verification(emb, ids))
    true_lm = torch.from_numpy(np.asarray(dataset.landmarks[:n]))
    res.update(landmark_errors(unit_to_pixels(out["landmarks"], dataset.size), true_lm))
    pose = getattr(dataset, "pose", None)
    expr = getattr(dataset, "expression", None)
    if pose is None or expr is None:
        pose, expr = pose_expression_arrays(dataset, n)
    for names, key, true in ((POSE_NAMES, "pose", pose), (EXPRESSION_NAMES, "expression", expr)):
        r2 = r2_scores(out[key], torch.from_numpy(np.asarray(true[:n])))
        res.update({f"r2_{n}": v for n, v in zip(names, r2.tolist())})
        res[f"r2_{key}"] = r2.mean().item()
    res.update(embedding_shifts(nets["identity"], dataset, min(n, shift_images), device=device))
    return res


@torch.no_grad()
def embedding_shifts(net, dataset, n: int, groups=("identity", "pose", "expression"), device="cpu") -> dict:
    """``emb_shift_<group>``: mean cosine distance (1 - cos) between the identity embedding of each of the first
    ``n`` faces of ``dataset`` and of the same face re-rendered with ``group`` taken from the next face. An identity
    code should move with identity only: what it moves with expression is what a frozen class code passes on of
    an identity source's expression (method 4's class code and class-cycle loss)."""
    from data.synthetic.counterfactual import to_image
    from data.synthetic.factors import swap
    from data.synthetic.painter import render

    n = min(n, len(dataset) - 1)
    if n < 1:
        return {}
    base = [dataset.factors(k) for k in range(n + 1)]
    x = torch.stack([to_image(render(base[k], dataset.size)) for k in range(n)]).to(device)
    emb = net(x).float()
    out = {}
    for g in groups:
        xg = torch.stack([to_image(render(swap(base[k], base[k + 1], g), dataset.size)) for k in range(n)]).to(device)
        out[f"emb_shift_{g}"] = (1 - (emb * net(xg).float()).sum(1)).mean().item()
    return out


def _run(method, cfg, n: int) -> dict:
    ds = method.datasets(cfg, "test")["faces"]
    with method.inference():
        return evaluate_face_nets({"identity": method.nets["identity"], "analysis": method.nets["analysis"]}, ds,
                                  cfg.eval.batch_size, method.device, n)


def evaluate(method, cfg, out_dir) -> list[dict]:
    """``eval.py`` entry for a ``face_nets`` checkpoint: the scores above on its synthetic test split."""
    return [{"split": "test", **_run(method, cfg, cfg.eval.max_images)}]


def scores(method, cfg, n: int) -> dict[str, float]:
    r = _run(method, cfg, n)
    return {k: r[k] for k in ("verif_auc", "verif_balanced_acc", "landmark_err_px", "r2_pose", "r2_expression",
                              "emb_shift_expression")}
