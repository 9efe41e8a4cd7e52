"""scripts/generator_ceiling.py: projections of true swaps into a generator's W space, scored as the leaderboard."""
import importlib.util
import json
from pathlib import Path

import torch

from models.nets.stylegan2 import Generator, save_public_format

ROOT = Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("generator_ceiling", ROOT / "scripts" / "generator_ceiling.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _tiny(size=16):
    torch.manual_seed(0)
    return Generator(size, style_dim=16, n_mlp=2, width=1 / 32).eval().requires_grad_(False)


def test_projection_finds_the_w_of_a_generated_image():
    g = _tiny()
    w_avg = g.mean_w(256)
    with torch.no_grad():
        w_true = g.truncate(g.mapping(torch.randn(4, 16, generator=torch.Generator().manual_seed(7))), 0.7, w_avg)
        target = g.synthesis(w_true)
        start_err = ((g.synthesis(w_avg[None].expand(4, -1)) - target) ** 2).mean()
    w = _script().project(g, w_avg, target, steps=300, starts=4)
    with torch.no_grad():
        err = ((g.synthesis(w) - target) ** 2).mean()
    assert w.shape == (4, 16) and err < 0.01 * start_err
    # an image the generator cannot draw stays far: the ceiling measures the generator, not the optimiser
    with torch.no_grad():
        noise = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    w2 = _script().project(g, w_avg, noise, steps=300, starts=4)
    with torch.no_grad():
        assert ((g.synthesis(w2) - noise) ** 2).mean() > 10 * err


def test_script_scores_a_generator_file(tmp_path, capsys):
    g = _tiny(32)  # the synthetic world renders from 32 px
    path = save_public_format(tmp_path / "g.pt", g_ema=g, w_avg=g.mean_w(64))
    mod = _script()
    assert mod.main(["--generator", str(path), "--pairs", "6", "--steps", "3", "--starts", "2",
                     "--identity-judge", "", "--analysis-judge", "", "--out", str(tmp_path / "out")]) == 0
    rows = json.loads((tmp_path / "out" / "generator_ceiling.json").read_text())
    assert [r["generator"] for r in rows] == ["ground truth (true swap)", "baseline: copy attribute source", str(path)]
    assert 0 < rows[2]["gt_psnr"] < 60 and "id_sim" not in rows[2]  # no judge: no judge columns
    assert "| " + str(path) in (tmp_path / "out" / "generator_ceiling.md").read_text()
    capsys.readouterr()
    assert mod.main(["--generator", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o2")]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error:") and "missing.pt" in err


def test_spread_of_judge_readings():
    mod = _script()

    def analysis(t):  # a stand-in judge: pose = mean brightness, expression = the first pixel, per image
        return {"pose": t.mean((1, 2, 3))[:, None], "expression": t[:, :2, 0, 0]}

    x = torch.rand(64, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    s = mod.spread(x, analysis)
    assert abs(s["pose"] - x.mean((1, 2, 3)).std().item()) < 1e-6
    assert abs(s["expression"] - x[:, :2, 0, 0].std(0).mean().item()) < 1e-6
    assert max(mod.spread(x[:1].expand(8, -1, -1, -1), analysis).values()) < 1e-6  # no variation
    g = _tiny()
    ratio = mod.sample_spread(g, g.mean_w(64), analysis, {"pose": 2 * s["pose"], "expression": s["expression"]}, 16)
    assert set(ratio) == {"pose", "expression"} and all(v > 0 for v in ratio.values())
