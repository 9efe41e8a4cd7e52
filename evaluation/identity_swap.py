"""Protocol of the ``identity_swap`` task (methods 3, 4 and 5): ``swap(identity_source, attribute_source)``.

Synthetic test pairs (``data/synthetic/counterfactual.identity_swap_pairs``): an identity source and an attribute
source of different identities; the true answer is the attribute source re-rendered with the identity source's
identity. Every method sees the pairs at its own resolution (``method.image_size``); outputs are scored at the
scoring size (the run's own size here; the leaderboard's common size there). Rows: the method and the copy
baselines (copy the attribute source, copy the identity source). Columns:

- ``gt_l1`` / ``gt_psnr``: pixel error against the true swap;
- ``attr_l1`` / ``id_l1``: distance to each input (a copy baseline scores 0 on its own);
- with an identity judge (``eval.identity_judge``): ``id_sim`` (cosine of the judge's embeddings, output vs the
  identity source), ``id_closer`` (fraction closer to the identity source than to the attribute source),
  ``id_sim_gt`` (vs the true swap);
- with an analysis judge (``eval.analysis_judge``): ``pose_err`` / ``expr_err`` (the judge's pose / expression
  of the output vs the attribute source's true factors), ``lnd_err_px`` (landmarks vs the true ones);
- the method row adds ``recon_psnr`` (``swap(x, x)`` vs x);
- with ground truth, a ``ground truth (true swap)`` row: the true swap scored by the same judges (each judge
  column's ceiling; its own pixel columns are left out).
Real data (no true swap): the first test pairs of the method's ``pairs`` dataset (``image`` = attribute source,
``image2`` = identity source), no gt columns. Grids: ``swap_grid.png`` (rows: identity sources; top row: attribute
sources), ``swap_vs_ground_truth.png`` (identity source, attribute source, output, truth).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from core.figures import image_grid, save_png
from data.synthetic.counterfactual import identity_swap_pairs
from metrics.batch import batched
from metrics.image import l1, psnr

BEST = ("gt_psnr", "max")
BASELINES = {"copy attribute source": "attr_ref", "copy identity source": "id_ref"}
TRUTH = "ground truth (true swap)"


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Area-average down (or bilinear up) to ``size`` px; unchanged at that size."""
    if x.shape[-1] == size:
        return x
    mode = "area" if x.shape[-1] > size else "bilinear"
    return F.interpolate(x, size=(size, size), mode=mode, **({} if mode == "area" else {"align_corners": False}))


def judges(method, cfg, device) -> tuple:
    """(identity judge or None, analysis judge or None, note). Configured judges are independent networks;
    without them a method may offer its own (``method.own_judges()``, e.g. the losses' networks: biased)."""
    from evaluation.identity_judge import configured_judge
    from models.nets.face_small import build_landmark_net, check_world

    e = cfg.eval
    own = method.own_judges() if hasattr(method, "own_judges") else {}
    ident = configured_judge(e, device)
    configured = ident is not None
    ident = ident if configured else own.get("identity")
    analysis = build_landmark_net(e.analysis_judge, device) if e.analysis_judge else own.get("analysis")
    for role, net, path in (("identity judge", ident if configured else None, e.identity_judge),
                            ("analysis judge", analysis if e.analysis_judge else None, e.analysis_judge)):
        check_world(net, cfg.data, role, path)
    note = []
    if not configured:
        note.append("identity judged by the method's own loss network (biased)" if ident is not None
                    else "no identity judge")
    if not e.analysis_judge:
        note.append("attributes judged by the method's own landmark net (biased)" if analysis is not None
                    else "no analysis judge")
    return ident, analysis, "; ".join(note) or "independent judges"


def synthetic_pairs(cfg, n: int, size: int, truth_size: int) -> dict:
    return identity_swap_pairs(cfg.data, n, size, truth_size)


def dataset_pairs(method, cfg, n: int) -> dict:
    """Real data (no ground truth): the first ``n`` pairs of the method's test ``pairs`` dataset."""
    ds = method.datasets(cfg, "test")["pairs"]
    items = [ds[k] for k in range(min(n, len(ds)))]
    attr, ident = torch.stack([it["image"] for it in items]), torch.stack([it["image2"] for it in items])
    return {"id": ident, "attr": attr, "id_ref": ident, "attr_ref": attr}


def outputs(method, pairs: dict, bs: int, size: int) -> torch.Tensor:
    """``method.swap`` of every pair, resized to ``size`` (the scoring size)."""
    dev = method.device
    with method.inference():
        out = batched(lambda i, a: method.swap(i.to(dev), a.to(dev)).float().clamp(-1, 1),
                      pairs["id"], pairs["attr"], bs=bs)
    return resize(out, size)


def _embed(judge, x):
    return F.normalize(batched(judge, x).float(), dim=1)


def analyse(analysis, x, size) -> dict:
    """The analysis judge's pose, expression and landmarks (in pixels of ``size``)."""
    pred = {k: batched(lambda t: analysis(t)[k], x).float() for k in ("pose", "expression", "landmarks")}
    pred["landmarks"] = (pred["landmarks"] + 1) * size / 2 - 0.5  # normalised coords -> pixels
    return pred


def score(out, pairs, ident=None, analysis=None) -> dict:
    """The columns of the module docstring for outputs ``out`` (at the references' size)."""
    s = {}
    if "gt" in pairs:
        s.update(gt_l1=l1(out, pairs["gt"]).mean().item(), gt_psnr=psnr(out, pairs["gt"]).mean().item())
    s.update(attr_l1=l1(out, pairs["attr_ref"]).mean().item(), id_l1=l1(out, pairs["id_ref"]).mean().item())
    if ident is not None:
        e_out, e_id, e_attr = (_embed(ident, t) for t in (out, pairs["id_ref"], pairs["attr_ref"]))
        sim_id, sim_attr = (e_out * e_id).sum(1), (e_out * e_attr).sum(1)
        s.update(id_sim=sim_id.mean().item(), id_closer=(sim_id > sim_attr).float().mean().item())
        if "gt" in pairs:
            s["id_sim_gt"] = (e_out * _embed(ident, pairs["gt"])).sum(1).mean().item()
    if analysis is not None and "pose" in pairs:
        pred = analyse(analysis, out, out.shape[-1])
        s.update(pose_err=(pred["pose"] - pairs["pose"]).abs().mean().item(),
                 expr_err=(pred["expression"] - pairs["expression"]).abs().mean().item(),
                 lnd_err_px=(pred["landmarks"] - pairs["landmarks"]).norm(dim=-1).mean().item())
    return s


def truth_score(pairs, ident=None, analysis=None) -> dict:
    """The judge columns of the true swap itself (its pixel columns against itself are trivial: left out)."""
    s = score(pairs["gt"], pairs, ident, analysis)
    for k in ("gt_l1", "gt_psnr", "id_sim_gt"):
        s.pop(k, None)
    return s


def rows_for(name: str, out, pairs, ident, analysis, data: str, baselines: bool = True) -> list[dict]:
    rows = [{"data": data, "result": name, **score(out, pairs, ident, analysis)}]
    if baselines:
        rows += [{"data": data, "result": b, **score(pairs[key], pairs, ident, analysis)}
                 for b, key in BASELINES.items()]
        if "gt" in pairs:
            rows.append({"data": data, "result": TRUTH, **truth_score(pairs, ident, analysis)})
    return rows


def recon_psnr(method, x, bs: int) -> tuple[torch.Tensor, float]:
    with method.inference():
        rec = batched(lambda t: method.swap(t, t).float().clamp(-1, 1), x.to(method.device), bs=bs)
    return rec, psnr(rec, x.to(rec.device)).mean().item()


def swap_grid(method, ids, attrs) -> list[list]:
    """Rows: identity sources; columns: attribute sources (top row); cells: the method's results."""
    grid = [[None] + list(attrs)]
    with method.inference():
        for i in range(ids.shape[0]):
            row = method.swap(ids[i:i + 1].expand(attrs.shape[0], -1, -1, -1), attrs)
            grid.append([ids[i]] + list(row.float().clamp(-1, 1)))
    return grid


def evaluate(method, cfg, out_dir: Path) -> list[dict]:
    dev, bs, size = method.device, cfg.eval.batch_size, method.image_size
    from evaluation.identity_judge import judge_name

    ident, analysis, note = judges(method, cfg, dev)
    if cfg.data.name == "synthetic" or cfg.data.name == "w_codes":
        pairs, data = synthetic_pairs(cfg, cfg.eval.max_images, size, size), "synthetic renders (ground truth)"
    else:
        pairs, data = dataset_pairs(method, cfg, cfg.eval.max_images), f"{cfg.data.name} test pairs"
    pairs = {k: v.to(dev) for k, v in pairs.items()}
    out = outputs(method, pairs, bs, size)
    rows = rows_for("method", out, pairs, ident, analysis, data)
    rows[0]["recon_psnr"] = recon_psnr(method, pairs["attr"], bs)[1]
    rows[0]["judges"] = note
    rows[0]["judge"] = judge_name(cfg.eval)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    k = min(cfg.eval.num_display, out.shape[0])
    save_png(image_grid(swap_grid(method, pairs["id"][:k], pairs["attr"][:k])), out_dir / "swap_grid.png")
    if "gt" in pairs:
        save_png(image_grid([list(pairs["id"][:k]), list(pairs["attr"][:k]), list(out[:k]), list(pairs["gt"][:k])]),
                 out_dir / "swap_vs_ground_truth.png")
    return rows


def scores(method, cfg, n: int) -> dict[str, float]:
    """Headline scalars on the first ``n`` synthetic pairs (pixel scores, and the judges' where configured)."""
    if cfg.data.name not in ("synthetic", "w_codes"):
        return {}
    size = method.image_size
    ident, analysis, _ = judges(method, cfg, method.device)
    pairs = {k: v.to(method.device) for k, v in synthetic_pairs(cfg, n, size, size).items()}
    return score(outputs(method, pairs, cfg.eval.batch_size, size), pairs, ident, analysis)
