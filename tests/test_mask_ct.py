"""Method 2 (mask-based content transfer): nets, blend semantics, losses, update order, evaluation."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import eval as evaluate
import train
from core import checkpoint as ckpt
from core.config import load_config
from metrics.mask_folder import read_mask_folder
from models import build_method
from core.step import StepContext
from models.mask_ct import LOSS_WEIGHTS
from models.nets.conv_autoencoder import mask_blend

ROOT = Path(__file__).resolve().parent.parent
TINY = ["data.size=32", "data.train_length=16", "data.test_length=8", "data.batch_size=4",
        "model.width=0.25", "model.sep=8", "train.log_every=1", "train.image_every=2", "train.grid_size=2",
        "eval.num_display=3", "eval.batch_size=4"]


def tiny(*extra, config="configs/mask_synth_glasses.yaml"):
    torch.manual_seed(0)
    return build_method(load_config(ROOT / config, [*TINY, *extra]), torch.device("cpu"))


def params(net):
    return [p.detach().clone() for p in net.parameters()]


def changed(before, net):
    return any(not torch.equal(b, p) for b, p in zip(before, net.parameters()))


def batch(n=4, size=32):
    g = torch.Generator().manual_seed(1)
    return {k: {"image": torch.rand(n, 3, size, size, generator=g) * 2 - 1} for k in "ab"}


def test_paper_parameter_counts_at_128px():
    # Mokady et al. code, sep=25, 128 px, BatchNorm affine parameters included (spec §2.2)
    m = build_method(load_config(ROOT / "configs/mask_celeba_glasses.yaml"), torch.device("cpu"))
    assert {k: sum(p.numel() for p in n.parameters()) for k, n in m.nets.items()} == {
        "e1": 6_483_482, "e2": 742_379, "d_a": 6_984_099, "d_b": 6_984_612, "disc": 998_401}
    assert m.nets["e1"].dim == 1948 and m.nets["e2"].dim == 100


@pytest.mark.parametrize("size", [32, 64, 128])
def test_shapes_and_mask_range(size):
    m = tiny(f"data.size={size}")
    x = torch.rand(2, 3, size, size) * 2 - 1
    c, s = m.encode(x)
    hw = max(2, size // 64)
    assert c.shape == (2, (128 - 8) * hw * hw) and s.shape == (2, 8 * hw * hw)
    for y in (m.decode(c, s), m.transfer(x, x.flip(0)), m.remove(x), m.shaved(c)):
        assert y.shape == x.shape
    mask = m.masks(x, x.flip(0))
    assert mask.shape == (2, 1, size, size) and 0 <= mask.min() and mask.max() <= 1


def test_blend_semantics():
    bg, raw = torch.rand(2, 3, 8, 8) * 2 - 1, torch.randn(2, 4, 8, 8)
    raw[:, 0] = -200.0  # sigmoid -> exactly 0
    out, mask = mask_blend(raw, bg)
    assert torch.equal(out, bg) and mask.shape == (2, 1, 8, 8) and mask.max() == 0
    raw[:, 0] = 200.0  # mask 1: the decoder's own tanh image
    out, _ = mask_blend(raw, bg)
    assert torch.equal(out, torch.tanh(raw[:, 1:]))

    m = tiny().eval()
    x, y = torch.rand(3, 3, 32, 32) * 2 - 1, torch.rand(3, 3, 32, 32) * 2 - 1
    final = m.nets["d_b"].net[-1]
    with torch.no_grad():
        final.bias[0] = -1e4  # mask 0 everywhere: transfer returns the target, removal the input
        assert torch.equal(m.transfer(y, x), y) and torch.equal(m.remove(x), x)
        final.bias[0] = 1e4  # mask 1: removal is D_A([E1(x), 0]) (not [E1(x), E2(x)] as removal.py did)
        assert torch.equal(m.remove(x), m.shaved(m.nets["e1"](x)))


def test_train_step_updates_every_net_and_logs_every_term():
    m = tiny()
    before = {k: params(n) for k, n in m.nets.items()}
    logs = m.train_step(batch(), 0, StepContext(torch.device("cpu")))
    assert set(logs) == {*(f"loss/{k}" for k in LOSS_WEIGHTS), "loss/confusion", "loss/gen", "loss/disc",
                         "mask/mean_a", "mask/mean_b"}
    assert all(np.isfinite(v) for v in logs.values())
    w = m.cfg.model
    total = sum(w[key] * logs[f"loss/{k}"] for k, key in LOSS_WEIGHTS.items()) + w.discweight * logs["loss/confusion"]
    assert logs["loss/gen"] == pytest.approx(total, rel=1e-5)
    assert all(changed(before[k], n) for k, n in m.nets.items())


def test_zero_weight_switches_a_term_off():
    # D_A only feeds Recon1 (gama on a, delta on b): with both off it gets no update
    m = tiny("model.gama=0", "model.delta=0", "model.discweight=0")
    before = {k: params(n) for k, n in m.nets.items()}
    logs = m.train_step(batch(), 0, StepContext(torch.device("cpu")))
    assert not changed(before["d_a"], m.nets["d_a"]) and changed(before["d_b"], m.nets["d_b"])
    assert not changed(before["disc"], m.nets["disc"]) and "loss/disc" not in logs and "loss/confusion" not in logs
    w = m.cfg.model
    assert logs["loss/gen"] == pytest.approx(sum(w[key] * logs[f"loss/{k}"] for k, key in LOSS_WEIGHTS.items()))
    with pytest.raises(ValueError, match="loss weights"):
        tiny(*(f"model.{key}=0" for key in LOSS_WEIGHTS.values()))


def test_paper_presets():
    want = {"glasses": (0.7, 0.7, 0, 0.001, 7, 5, 0.005), "smile": (1, 1, 0, 0.0001, 7, 5, 0.005),
            "blond_women": (0.1, 0.1, 0, 0.04, 1, 1, 1), "bald": (0.5, 0.5, 0, 0.5, 5, 5, 1)}
    for name, weights in want.items():
        cfg = load_config(ROOT / f"configs/mask_celeba_{name}.yaml")
        m = cfg.model
        assert (m.alpha1, m.alpha2, m.beta1, m.beta2, m.gama, m.delta, m.discweight) == weights
        assert cfg.data.root == f"data/{name}" and cfg.data.size == 128 and cfg.train.steps == 150000
    assert load_config(ROOT / "configs/mask_synth_facial_hair.yaml").data.attribute == "facial_hair"


def test_train_then_eval_writes_grids_and_iou(tmp_path):
    argv = ["--config", str(ROOT / "configs/mask_synth_glasses.yaml"), f"run.dir={tmp_path}", "run.name=m",
            f"data.cache_dir={tmp_path / 'cache'}", *TINY, "train.steps=2"]
    assert train.main(argv) == 0
    run = tmp_path / "m"
    assert {"transfer-0000002.png", "transfer_masks-0000002.png"} <= {p.name for p in (run / "grids").iterdir()}
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert "loss/recon1_a" in stats[-1] and "loss/disc" in stats[-1]

    assert evaluate.main(["--checkpoint", str(run / ckpt.LATEST), "--out", str(tmp_path / "ev")]) == 0
    files = {p.name for p in (tmp_path / "ev").iterdir()}
    assert {"transfer_grid.png", "mask_grid.png", "mask_overlay.png", "removal_grid.png", "metrics.md"} <= files
    rows = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    seg = {(r["task"], r["method"]): r for r in rows if r["task"].startswith("segmentation")}
    own = seg[("segmentation a (self-mask)", "mask_ct")]
    assert 0 <= own["iou"] <= 1 and 0.05 <= own["threshold"] <= 0.95 and own["images"] == 8
    assert ("segmentation a (self-mask)", "baseline: mean training mask") in seg
    assert ("segmentation transfer (a_i onto b_i)", "mask_ct") in seg
    to_source = seg[("segmentation transfer vs the source's region (a_i)", "mask_ct")]
    assert to_source["gt_area"] == own["gt_area"]  # scored against a_i's own region
    # the overlap of the two true regions, from the renderer's masks directly
    from data.synthetic import CONTENT_ATTRIBUTES
    from data.synthetic.counterfactual import content_transfer_truth, stack
    from models import load_method

    method, cfg, _ = load_method(run / ckpt.LATEST)
    test = method.datasets(cfg, "test")
    src = stack(test["a"], 8, key="mask")[:, CONTENT_ATTRIBUTES.index("glasses")] > 0.5
    true = content_transfer_truth(test["a"], test["b"], 8, "glasses")["mask_transfer"][:, 0] > 0.5
    inter, union = (src & true).flatten(1).sum(1).float(), (src | true).flatten(1).sum(1).float()
    overlap = seg[("segmentation transfer (a_i onto b_i)", "baseline: the source's region (a_i)")]
    assert overlap["iou"] == pytest.approx((inter / union.clamp(min=1)).mean().item(), abs=1e-6)
    split = next(r for r in rows if r["task"].startswith("transfer L1 in the true region, split"))
    assert 0 <= split["covered_share"] <= 1 and split["images"] == 8
    assert ("segmentation b (no content)", "mask_ct") in seg
    assert any(r["task"] == "transfer" and r["method"] == "mask_ct" for r in rows)


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_mask_folder_reader(tmp_path):
    on = np.zeros((16, 16), np.uint8)
    on[4:12, 2:8] = 255
    _png(tmp_path / "masks" / "face1.png", on)
    _png(tmp_path / "masks" / "face3.png", (on > 0).astype(np.uint8))  # a 0/1 file
    _png(tmp_path / "masks" / "other.png", on)
    images = [tmp_path / "img" / f"face{i}.jpg" for i in (1, 2, 3)]
    idx, masks = read_mask_folder(tmp_path / "masks", images, size=8)
    assert idx == [0, 2] and masks.shape == (2, 1, 8, 8) and masks.dtype == torch.bool
    want = torch.zeros(8, 8, dtype=torch.bool)
    want[2:6, 1:4] = True
    assert torch.equal(masks[0, 0], want) and torch.equal(masks[1, 0], want)
    with pytest.raises(FileNotFoundError):
        read_mask_folder(tmp_path / "masks", [tmp_path / "nomatch.png"], size=8)


def test_eval_on_folders_with_mask_dir(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("trainA", "trainB", "testA", "testB"):
        for i in range(4):
            _png(tmp_path / "data" / split / f"{split}_{i}.png", rng.integers(0, 255, (40, 36, 3), dtype=np.uint8))
    mask = np.zeros((40, 36), np.uint8)
    mask[10:20, 8:28] = 255
    for i in (0, 2):
        _png(tmp_path / "masks" / f"testA_{i}.png", mask)
    # cached domains carry no paths: matched through the lists
    m = tiny("data.name=folders", f"data.root={tmp_path / 'data'}", f"eval.mask_dir={tmp_path / 'masks'}",
             "data.cache=build", f"data.cache_root={tmp_path / 'cache'}")
    from evaluation import evaluate

    rows = evaluate(m, m.cfg, tmp_path / "ev")
    seg = [r for r in rows if r["task"] == "segmentation a (self-mask)"]
    assert len(seg) == 1 and seg[0]["images"] == 2 and 0 <= seg[0]["iou"] <= 1
    assert (tmp_path / "ev" / "mask_overlay.png").is_file() and not hasattr(m.datasets(m.cfg, "test")["a"], "paths")


def test_convert_original_checkpoint_then_remove(tmp_path):
    import infer
    import scripts.convert_mbu_checkpoint as convert

    m = tiny()
    m.train_step(batch(), 0, StepContext(torch.device("cpu")))
    prefix = {"e1": "full.", "e2": "full.", "d_a": "main.", "d_b": "main."}
    old_names = {"e1": "e1", "e2": "e2", "d_a": "decoder", "d_b": "mustacher"}  # released files' names
    ours = {k: m.nets[k].state_dict() for k in prefix}
    original = {old_names[k]: {prefix[k] + key.removeprefix("net."): v for key, v in sd.items()
                               if not key.endswith("num_batches_tracked")}  # PyTorch 0.4.0 files lack it
                for k, sd in ours.items()}
    torch.save({**original, "iters": 7}, tmp_path / "checkpoint_mustache")
    dest = tmp_path / "conv" / ckpt.LATEST
    assert convert.main([str(tmp_path / "checkpoint_mustache"), str(dest), "--config",
                         str(ROOT / "configs/mask_synth_glasses.yaml"), *TINY]) == 0
    state = ckpt.load(dest)
    assert state["step"] == 7 and state["method"] == "mask_ct"
    for k, sd in ours.items():
        for key, v in sd.items():
            if not key.endswith("num_batches_tracked"):
                assert torch.equal(state["nets"][f"{k}.{key}"], v), key

    _png(tmp_path / "faces" / "x" / "one.png", np.full((40, 30, 3), 90, np.uint8))
    _png(tmp_path / "faces" / "two.jpg", np.full((20, 20, 3), 200, np.uint8))
    assert infer.main(["remove", "--checkpoint", str(dest), "--images", str(tmp_path / "faces"), "--out",
                       str(tmp_path / "removed")]) == 0
    assert (tmp_path / "removed" / "x" / "one.png").is_file() and (tmp_path / "removed" / "two.png").is_file()


def test_split_by_mask_by_hand():
    from evaluation.mask_segmentation import split_by_mask

    truth = torch.zeros(2, 3, 4, 4)
    pred = truth.clone()
    region = torch.zeros(2, 1, 4, 4)
    region[:, :, :2] = 1  # 8 pixels per image
    soft = torch.zeros(2, 1, 4, 4)
    soft[0, :, 0] = 0.9   # image 0: row 0 covered, row 1 not; image 1: nothing covered
    pred[0, :, 0] = 0.2   # error 0.2 where covered
    pred[0, :, 1] = 1.0   # error 1.0 where not
    pred[1, :, :2] = 0.5  # error 0.5, all uncovered
    pred[:, :, 3] = 9.0   # outside the region: ignored
    r = split_by_mask("m", pred, truth, region, soft)
    assert r["l1_covered"] == pytest.approx(0.2)            # image 1 has no covered pixel: left out
    assert r["l1_uncovered"] == pytest.approx((1.0 + 0.5) / 2)
    assert r["covered_share"] == pytest.approx(4 / 16)
