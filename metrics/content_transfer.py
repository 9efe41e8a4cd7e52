"""Evaluation of content-transfer methods (attribute domains a = with, b = without).

Any method with ``transfer(src, tgt, nets)``, ``remove(x, nets)`` and ``encode(x, nets)`` fits.
Writes grids (transfer, swap, removal) and, on synthetic data, scores the outputs against the
renderer's ground truth: the target re-rendered with the source's attribute (transfer), the source
re-rendered without it (removal). Baselines: copy the target / copy the source / copy the input.
A linear probe on the common code measures how much it still tells the domains apart.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from metrics.batch import batched
from core.figures import image_grid, save_png
from metrics.image import l1, masked_l1, psnr, ssim
from metrics.probe import linear_probe


def _stack(ds, n, key="image"):
    return torch.stack([ds[i][key] for i in range(min(n, len(ds)))])


def _errors(pred, gt, mask=None) -> dict:
    out = {"l1": l1(pred, gt).mean().item(), "psnr": psnr(pred, gt).mean().item(),
           "ssim": ssim(pred, gt).mean().item()}
    if mask is not None:  # the attribute region (where the edit acts) and the rest (to be preserved)
        out["l1_in_mask"] = masked_l1(pred, gt, mask).mean().item()
        out["l1_out_mask"] = masked_l1(pred, gt, 1.0 - mask).mean().item()
    return out


def synthetic_ground_truth(ds_a, ds_b, n: int, attribute: str):
    """Ground-truth images for pairs (a_i, b_i): transfer a_i's attribute onto b_i, a_i without it,
    a_{i+1}'s attribute onto a_i (swap), plus the union attribute masks of each pair."""
    from data.synthetic import CONTENT_ATTRIBUTES, remove, render, swap
    from data.folders import to_tensor

    if attribute not in CONTENT_ATTRIBUTES:
        raise ValueError(f"{attribute!r} is not a synthetic content attribute ({list(CONTENT_ATTRIBUTES)})")
    size = ds_a[0]["image"].shape[-1]
    out = {"transfer": [], "removal": [], "swap": [], "mask_transfer": [], "mask_removal": [], "mask_swap": []}
    for i in range(n):
        fa, fb, fa2 = ds_a.factors(i), ds_b.factors(i), ds_a.factors((i + 1) % n)
        for name, f, other in (("transfer", swap(fb, fa, attribute), fb),
                               ("removal", remove(fa, attribute), fa),
                               ("swap", swap(fa, fa2, attribute), fa)):
            r, r_other = render(f, size), render(other, size)
            out[name].append(to_tensor(r["image"]))
            m = np.maximum(r["masks"][attribute], r_other["masks"][attribute])
            out[f"mask_{name}"].append(torch.from_numpy(m)[None])
    return {key: torch.stack(v) for key, v in out.items()}


@torch.no_grad()
def evaluate_content_transfer(method, cfg, out_dir: Path, use_ema: bool = True) -> list[dict]:
    """Grids + metrics of a content-transfer method on the test split; returns the metric rows."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev, bs = method.device, cfg.eval.batch_size
    nets = method.eval_nets(use_ema)
    test = method.datasets(cfg, "test")
    n = min(cfg.eval.max_images, len(test["a"]), len(test["b"]))
    a, b = _stack(test["a"], n).to(dev), _stack(test["b"], n).to(dev)
    a_next = torch.roll(a, -1, 0)

    def run(fn, *xs):
        return batched(lambda *t: fn(*t).float(), *xs, bs=bs)

    pred = {
        "transfer": run(lambda s, t: method.transfer(s, t, nets), a, b),
        "removal": run(lambda x: method.remove(x, nets), a),
        "swap": run(lambda s, t: method.transfer(s, t, nets), a_next, a),
    }
    baselines = {
        "transfer": {"copy target": b, "copy source": a},
        "removal": {"copy input": a},
        "swap": {"copy target": a, "copy source": a_next},
    }

    # grids: rows = sources of the attribute, columns = targets
    k = min(cfg.eval.num_display, n)
    grid = [[None] + list(b[:k])]
    for i in range(k):
        grid.append([a[i]] + list(method.transfer(a[i:i + 1].expand(k, -1, -1, -1), b[:k], nets).float()))
    save_png(image_grid(grid), out_dir / "transfer_grid.png")
    grid = [[None] + list(a[:k])]
    for i in range(k):
        grid.append([a[i]] + list(method.transfer(a[i:i + 1].expand(k, -1, -1, -1), a[:k], nets).float()))
    save_png(image_grid(grid), out_dir / "swap_grid.png")

    rows = []
    gt = None
    if cfg.data.name == "synthetic":
        gt = synthetic_ground_truth(test["a"], test["b"], n, cfg.data.attribute)
        gt = {key: v.to(dev) for key, v in gt.items()}
        save_png(image_grid([list(a[:k]), list(pred["removal"][:k]), list(gt["removal"][:k])]),
                 out_dir / "removal_grid.png")
        save_png(image_grid([list(a[:k]), list(b[:k]), list(pred["transfer"][:k]), list(gt["transfer"][:k])]),
                 out_dir / "transfer_vs_truth.png")
        for task in ("transfer", "removal", "swap"):
            mask = gt[f"mask_{task}"]
            rows.append({"task": task, "method": cfg.method, **_errors(pred[task], gt[task], mask)})
            for name, img in baselines[task].items():
                rows.append({"task": task, "method": f"baseline: {name}", **_errors(img, gt[task], mask)})
    else:
        save_png(image_grid([list(a[:k]), list(pred["removal"][:k])]), out_dir / "removal_grid.png")

    # reconstructions (domain b uses the zero separate code)
    rec_a = run(lambda x: method.decode(*method.encode(x, nets), nets), a)
    rec_b = run(lambda x: method.remove(x, nets), b)
    rows.append({"task": "reconstruction a", "method": cfg.method, **_errors(rec_a, a)})
    rows.append({"task": "reconstruction b", "method": cfg.method, **_errors(rec_b, b)})

    rows += domain_probes(method, cfg, nets, a, b)
    return rows


@torch.no_grad()
def domain_probes(method, cfg, nets, test_a, test_b) -> list[dict]:
    """Linear probes predicting the domain (has the attribute or not) from each code.

    Trained on codes of training-split images, tested on the given test images (equal counts per
    domain). The common code should be
    near chance (0.5); the separate code and raw pixels serve as controls that can predict it.
    """
    train = method.datasets(cfg, "train")
    n_train = min(1024, len(train["a"]), len(train["b"]))
    n_test = test_a.shape[0]

    def feats(x):
        x = x.to(method.device)
        codes = batched(lambda t: torch.cat([c.flatten(1).float() for c in method.encode(t, nets)], 1), x,
                         bs=cfg.eval.batch_size)
        return codes.cpu(), x.flatten(1).cpu()

    (tr_a, px_tr_a), (tr_b, px_tr_b) = feats(_stack(train["a"], n_train)), feats(_stack(train["b"], n_train))
    (te_a, px_te_a), (te_b, px_te_b) = feats(test_a), feats(test_b)
    y_tr = torch.cat([torch.ones(n_train), torch.zeros(n_train)]).long()
    y_te = torch.cat([torch.ones(n_test), torch.zeros(n_test)]).long()
    c_dim = nets["e1"].dim if "e1" in nets else tr_a.shape[1]
    rows = []
    for name, sl, (xa, xb, ta, tb) in (
        ("common code", slice(0, c_dim), (tr_a, tr_b, te_a, te_b)),
        ("separate code", slice(c_dim, None), (tr_a, tr_b, te_a, te_b)),
        ("pixels", slice(None), (px_tr_a, px_tr_b, px_te_a, px_te_b)),
    ):
        r = linear_probe(torch.cat([xa[:, sl], xb[:, sl]]), y_tr, torch.cat([ta[:, sl], tb[:, sl]]), y_te)
        rows.append({"task": "domain probe", "method": f"{cfg.method}: {name}",
                     "accuracy": r["accuracy"], "chance": r["chance"]})
    return rows
