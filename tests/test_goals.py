"""Reference goals on leaderboards (evaluation/goals.py) and the identity-swap ground-truth row."""
import torch
import torch.nn.functional as F

from evaluation import goals
from evaluation import identity_swap as idswap
from evaluation.leaderboard import _rank, render_markdown


def _board(task, rows):
    return {"task": task, "rows": [{"row": r, "method": m, "values": v, **({"truth": True} if t else {})}
                                   for r, m, v, t in rows]}


def test_identity_swap_goals_use_baselines_and_the_truth_row():
    board = _board("identity_swap", [
        ("good", "mad", {"gt_psnr": 17.7, "id_sim": 0.81, "pose_err": 0.04, "expr_err": 0.2, "lnd_err_px": 1.0}, 0),
        ("bad", "g2g", {"gt_psnr": 17.5, "id_sim": 0.79, "pose_err": 0.06, "expr_err": 0.3, "lnd_err_px": 1.3}, 0),
        ("baseline: copy attribute source", "", {"gt_psnr": 15.6}, 0),
        ("baseline: copy identity source", "", {"gt_psnr": 12.0, "pose_err": 0.1, "expr_err": 0.44,
                                                "lnd_err_px": 2.4}, 0),
        (idswap.TRUTH, "", {"id_sim": 1.0}, 1),
    ])
    res = goals.check(board)
    by = {(e["row"], e["goal"].split()[0]): e for e in res}
    assert len(res) == 10  # two method rows x five goals; baselines and truth are not checked
    assert by[("good", "gt_psnr")]["bar"] == 15.6 + 2 and by[("good", "gt_psnr")]["met"]
    assert not by[("bad", "gt_psnr")]["met"]
    assert by[("good", "id_sim")]["bar"] == 0.8 and by[("good", "id_sim")]["met"]
    assert not by[("bad", "id_sim")]["met"]
    assert by[("good", "pose_err")]["bar"] == 0.05 and not by[("bad", "pose_err")]["met"]
    assert by[("good", "expr_err")]["met"] and not by[("bad", "expr_err")]["met"]
    assert by[("good", "lnd_err_px")]["met"] and not by[("bad", "lnd_err_px")]["met"]
    md = goals.render_markdown(res)
    assert "5 of 10 met" in md and "MISSED" in md


def test_content_goals_apply_per_method_and_report_missing_values():
    board = _board("content_transfer", [
        ("m1", "content_ae", {"transfer_l1_in": 0.29, "swap_l1_in": 0.3, "removal_l1_in": 0.21,
                              "common_probe": 0.75, "transfer_psnr": 20.0}, 0),
        ("m2", "mask_ct", {"transfer_l1_in": 0.31, "swap_l1_in": 0.35, "removal_l1_in": 0.2,
                           "transfer_psnr": 23.0}, 0),
        ("baseline: copy target", "", {"swap_l1_in": 0.343, "transfer_psnr": 22.74}, 0),
    ])
    res = {(e["row"], e["goal"].split()[0]): e for e in goals.check(board)}
    assert ("m1", "transfer_psnr") not in res  # the PSNR goal is method 2's only
    assert res[("m2", "transfer_psnr")]["met"]
    assert res[("m1", "transfer_l1_in")]["met"] and not res[("m2", "transfer_l1_in")]["met"]
    assert res[("m1", "swap_l1_in")]["met"] and not res[("m2", "swap_l1_in")]["met"]
    assert not res[("m1", "removal_l1_in")]["met"] and res[("m2", "removal_l1_in")]["met"]
    assert res[("m1", "common_probe")]["met"]
    assert res[("m2", "common_probe")]["met"] is None  # no probe value: not met, not missed


def test_truth_row_scores_the_true_swap_with_the_judge_and_is_unranked():
    g = torch.Generator().manual_seed(0)
    pairs = {k: torch.rand(6, 3, 8, 8, generator=g) * 2 - 1 for k in ("gt", "id_ref", "attr_ref")}

    def judge(x):
        return x.flatten(1)

    s = idswap.truth_score(pairs, judge)
    cos = F.cosine_similarity(pairs["gt"].flatten(1), pairs["id_ref"].flatten(1), dim=1)
    assert abs(s["id_sim"] - cos.mean().item()) < 1e-6
    assert "gt_psnr" not in s and "gt_l1" not in s and "id_sim_gt" not in s
    rows = idswap.rows_for("method", pairs["attr_ref"], pairs, judge, None, "toy")
    assert [r["result"] for r in rows][-1] == idswap.TRUTH
    board = {"task": "identity_swap", "setting": {}, "grid": (None, ["x"]),
             "columns": [{"name": "id_sim", "label": "identity similarity", "better": "higher"}],
             "rows": [{"row": "run", "method": "g2g", "values": {"id_sim": 0.5}},
                      {"row": idswap.TRUTH, "method": "", "truth": True, "values": {"id_sim": s["id_sim"]}}]}
    _rank(board["rows"], board["columns"])
    assert board["rows"][0]["ranks"]["id_sim"] == 1 and "ranks" not in board["rows"][1]
    board["goals"] = goals.check(board)
    md = render_markdown(board)
    assert f"{s['id_sim']:.4g} (truth)" in md and "Reference goals" in md


def test_attribute_probes_find_where_the_look_of_the_attribute_lives():
    """A code that holds the true glasses colour and shape scores R^2 near 1, pure noise near 0 or below."""
    from data.synthetic import factor_vectors, sample_factors
    from evaluation.content_transfer import ATTRIBUTE_LOOK, attribute_probes

    class Domain:  # the factors of a domain-a stream (every image has glasses)
        def __init__(self, split):
            self.split = split

        def factors(self, i):
            return sample_factors(0, i, 1000, {"glasses": True}, split=self.split)

    tr, te = Domain("train-a"), Domain("test-a")
    g = torch.Generator().manual_seed(0)

    def codes(ds, n):
        look = torch.stack([torch.from_numpy(factor_vectors(ds.factors(i))["glasses"]) for i in range(n)]).float()
        return {"separate": torch.cat([look[:, 1:7], torch.randn(n, 10, generator=g)], 1),
                "common": torch.randn(n, 16, generator=g)}

    rows = {r["method"]: r for r in attribute_probes("m", "glasses", tr, te, codes(tr, 400), codes(te, 100))}
    assert set(ATTRIBUTE_LOOK["glasses"]) == {"shape", "colour", "all"}
    assert rows["m: separate code"]["r2_colour"] > 0.95 and rows["m: separate code"]["r2_shape"] > 0.95
    assert rows["m: common code"]["r2_colour"] < 0.1 and rows["m: common code"]["r2_shape"] < 0.1
    # thickness, lens size and tint are not in the separate code here: "all" sits between
    assert rows["m: common code"]["r2_all"] < rows["m: separate code"]["r2_all"] < 0.95
