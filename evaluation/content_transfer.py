"""Protocol of the ``content_transfer`` task (methods 1, 2): domains a (with the attribute) and b (without).

Test pairs (a_i, b_i) of the test split. Three edits: transfer (a_i's content onto b_i), removal (from a_i),
swap (a_{i+1}'s content onto a_i). On synthetic data each output is scored against the world's true answer
(``data/synthetic/counterfactual.py``): L1 / PSNR / SSIM over the image, L1 inside the attribute region (where the
edit acts) and outside it (what must stay), beside copy baselines (copy the target / the source / the input).
Reconstructions, and linear probes that predict the domain from each code (the common code should be at chance).
Grids: ``transfer_grid.png`` (rows: sources, columns: targets), ``swap_grid.png``, ``removal_grid.png``,
``transfer_vs_truth.png`` (a, b, transfer, truth).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.figures import image_grid, save_png
from data.synthetic.counterfactual import content_transfer_truth, stack
from metrics.batch import batched
from metrics.image import l1, masked_l1, psnr, ssim
from metrics.probe import linear_probe

EDITS = ("transfer", "removal", "swap")
# during training and for ``checkpoint-best.pt``
BEST = ("transfer_l1_in_mask", "min")


def errors(pred, gt, mask=None) -> dict:
    out = {"l1": l1(pred, gt).mean().item(), "psnr": psnr(pred, gt).mean().item(),
           "ssim": ssim(pred, gt).mean().item()}
    if mask is not None:  # the attribute region (where the edit acts) and the rest (to be preserved)
        out["l1_in_mask"] = masked_l1(pred, gt, mask).mean().item()
        out["l1_out_mask"] = masked_l1(pred, gt, 1.0 - mask).mean().item()
    return out


def test_pairs(method, cfg, n: int) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """(test datasets, a, b): the first ``n`` images of each test domain, on the method's device."""
    test = method.datasets(cfg, "test")
    n = min(n, len(test["a"]), len(test["b"]))
    return test, stack(test["a"], n).to(method.device), stack(test["b"], n).to(method.device)


def outputs(method, a, b, bs: int, size: int | None = None) -> dict:
    """The three edits of the pairs (a_i, b_i) (``size``: resized to it with area averaging)."""
    a_next = torch.roll(a, -1, 0)

    def run(fn, *xs):
        out = batched(lambda *t: fn(*t).float(), *xs, bs=bs)
        return out if size in (None, out.shape[-1]) else F.interpolate(out, size=(size, size), mode="area")

    with method.inference():
        return {"transfer": run(method.transfer, b, a), "removal": run(method.remove, a),
                "swap": run(method.transfer, a, a_next)}


def baselines(a, b) -> dict:
    return {"transfer": {"copy target": b, "copy source": a}, "removal": {"copy input": a},
            "swap": {"copy target": a, "copy source": torch.roll(a, -1, 0)}}


def scored_rows(name: str, pred: dict, truth: dict, base: dict | None = None) -> list[dict]:
    """Rows ``{task, method, l1, psnr, ssim, l1_in_mask, l1_out_mask}`` of ``pred`` (and the baselines)."""
    rows = []
    for task in EDITS:
        mask = truth[f"mask_{task}"]
        rows.append({"task": task, "method": name, **errors(pred[task], truth[task], mask)})
        for bname, img in (base or {}).get(task, {}).items():
            rows.append({"task": task, "method": f"baseline: {bname}", **errors(img, truth[task], mask)})
    return rows


def _truth(cfg, test, n, device):
    return {k: v.to(device) for k, v in content_transfer_truth(test["a"], test["b"], n, cfg.data.attribute).items()}


def evaluate(method, cfg, out_dir: Path) -> list[dict]:
    """Grids + metric rows of a content-transfer method on the test split."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bs = cfg.eval.batch_size
    test, a, b = test_pairs(method, cfg, cfg.eval.max_images)
    n = a.shape[0]
    pred = outputs(method, a, b, bs)
    k = min(cfg.eval.num_display, n)
    with method.inference():
        for name, targets in (("transfer_grid", b[:k]), ("swap_grid", a[:k])):  # rows: sources; columns: targets
            grid = [[None] + list(targets)]
            for i in range(k):
                grid.append([a[i]] + list(method.transfer(targets, a[i:i + 1].expand(k, -1, -1, -1)).float()))
            save_png(image_grid(grid), out_dir / f"{name}.png")
        rec_a = batched(lambda x: method.reconstruct(x).float(), a, bs=bs)
        rec_b = batched(lambda x: method.remove(x).float(), b, bs=bs)  # b's separate code is the zero code

    rows = []
    if cfg.data.name == "synthetic":
        truth = _truth(cfg, test, n, method.device)
        save_png(image_grid([list(a[:k]), list(pred["removal"][:k]), list(truth["removal"][:k])]),
                 out_dir / "removal_grid.png")
        save_png(image_grid([list(a[:k]), list(b[:k]), list(pred["transfer"][:k]), list(truth["transfer"][:k])]),
                 out_dir / "transfer_vs_truth.png")
        rows += scored_rows(cfg.method, pred, truth, baselines(a, b))
    else:
        save_png(image_grid([list(a[:k]), list(pred["removal"][:k])]), out_dir / "removal_grid.png")
    rows.append({"task": "reconstruction a", "method": cfg.method, **errors(rec_a, a)})
    rows.append({"task": "reconstruction b", "method": cfg.method, **errors(rec_b, b)})
    return rows + domain_probes(method, cfg, a, b, test["a"])


def scores(method, cfg, n: int) -> dict[str, float]:
    """Headline scalars on the first ``n`` test pairs (synthetic data): each edit's L1 in the region and PSNR."""
    if cfg.data.name != "synthetic":
        return {}
    test, a, b = test_pairs(method, cfg, n)
    pred = outputs(method, a, b, cfg.eval.batch_size)
    truth = _truth(cfg, test, a.shape[0], method.device)
    out = {}
    for r in scored_rows(cfg.method, pred, truth):
        out.update({f"{r['task']}_l1_in_mask": r["l1_in_mask"], f"{r['task']}_psnr": r["psnr"]})
    return out


def codes(method, x, bs: int) -> dict[str, torch.Tensor]:
    with method.inference():
        chunks = [method.codes(x[i:i + bs].to(method.device)) for i in range(0, x.shape[0], bs)]
    return {k: torch.cat([c[k].flatten(1).float() for c in chunks]).cpu() for k in chunks[0]}


def domain_probes(method, cfg, test_a, test_b, test_a_data=None) -> list[dict]:
    """Linear probes predicting the domain (has the attribute or not) from each code.

    Trained on codes of training-split images, tested on the given test images (equal counts per domain).
    The common code should be near chance (0.5); the separate code and raw pixels are controls that can.
    With ``test_a_data`` (the dataset ``test_a`` was stacked from, synthetic), the attribute probes too."""
    train = method.datasets(cfg, "train")
    n_train = min(1024, len(train["a"]), len(train["b"]))
    tr_a, tr_b = stack(train["a"], n_train), stack(train["b"], n_train)
    bs = cfg.eval.batch_size
    feats = [codes(method, x, bs) for x in (tr_a, tr_b, test_a, test_b)]
    pixels = [x.flatten(1).cpu() for x in (tr_a, tr_b, test_a, test_b)]
    n_test = test_a.shape[0]
    y_tr = torch.cat([torch.ones(n_train), torch.zeros(n_train)]).long()
    y_te = torch.cat([torch.ones(n_test), torch.zeros(n_test)]).long()
    rows = []
    for name, (xa, xb, ta, tb) in (("common code", [f["common"] for f in feats]),
                                   ("separate code", [f["separate"] for f in feats]),
                                   ("pixels", pixels)):
        r = linear_probe(torch.cat([xa, xb]), y_tr, torch.cat([ta, tb]), y_te)
        rows.append({"task": "domain probe", "method": f"{cfg.method}: {name}",
                     "accuracy": r["accuracy"], "chance": r["chance"]})
    if hasattr(test_a_data, "factors") and hasattr(train["a"], "factors") and len(test_a_data) >= n_test:
        rows += attribute_probes(cfg.method, cfg.data.attribute, train["a"], test_a_data, feats[0], feats[2])
    return rows


# the look of a content attribute in its factor vector (data.synthetic.factor_vectors; index 0 is presence)
ATTRIBUTE_LOOK = {"glasses": {"shape": slice(1, 4), "colour": slice(4, 7), "all": slice(1, 14)},
                  "facial_hair": {"type": slice(1, 4), "colour": slice(4, 7), "all": slice(1, 8)}}


def attribute_probes(name: str, attribute: str, train_a, test_a, codes_train: dict, codes_test: dict) -> list[dict]:
    """Where the look of the attribute (its shape, colour, ...) lives among domain a's codes: ridge R^2 from each
    code to the true attribute factors of the synthetic images, trained on the training images' codes, scored on
    the test images'. A transfer Dec(E1(b), E2(a)) can only carry what the separate code holds; what the common
    code holds instead is dropped (the transferred attribute comes out as an average one)."""
    from data.synthetic import factor_vectors
    from metrics.probe import ridge_probe

    def truth(ds, n):
        return torch.from_numpy(np.stack([factor_vectors(ds.factors(i))[attribute] for i in range(n)]))

    y_tr, y_te = truth(train_a, codes_train["common"].shape[0]), truth(test_a, codes_test["common"].shape[0])
    rows = []
    for code in ("common", "separate"):
        x_tr, x_te = codes_train[code], codes_test[code]
        row = {"task": "attribute probe", "method": f"{name}: {code} code"}
        for part, cols in ATTRIBUTE_LOOK[attribute].items():
            keep = y_tr[:, cols].std(0) > 0  # a one-hot or colour column that never varies has no R^2
            yt, ye = y_tr[:, cols][:, keep], y_te[:, cols][:, keep]
            # the ridge strength that predicts a held-out fifth of the training codes best (codes have about as
            # many features as there are training images, so a fixed small one overfits)
            cut = x_tr.shape[0] * 4 // 5
            alpha = max(RIDGE_ALPHAS, key=lambda a: ridge_probe(x_tr[:cut], yt[:cut], x_tr[cut:], yt[cut:], a)["mean_r2"])
            row[f"r2_{part}"] = ridge_probe(x_tr, yt, x_te, ye, alpha)["mean_r2"]
        rows.append(row)
    return rows


RIDGE_ALPHAS = (1.0, 10.0, 100.0, 1e3, 1e4, 1e5)
