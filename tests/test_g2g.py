"""Method 4 (G2G cross-training): identity pair sampler, tiny training run (losses, grids, resume), the VGGFace2
ResNet-50 loader, eval against the synthetic ground truth."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import eval as eval_cli
import train
from core import checkpoint as ckpt

ROOT = Path(__file__).resolve().parent.parent
TERMS = ("loss/long", "loss/short", "loss/cyc_content", "loss/cyc_id", "loss/g_adv", "loss/gen", "loss/dis")


def g2g_args(tmp, name, *extra):
    return ["--config", str(ROOT / "configs/g2g_synth.yaml"), f"run.dir={tmp}", f"run.name={name}",
            f"data.cache_dir={tmp / 'cache'}", "data.train_length=24", "data.test_length=8", "data.n_identities=6",
            "data.batch_size=2", "model.class_encoder=small", "model.nf=8", "model.nfd=8", "model.nf_mlp=16",
            "model.latent_dim=8", "model.n_res_blks=1", "eval.identity_judge=null", "eval.analysis_judge=null", "train.log_every=1",
            "train.image_every=3", "train.grid_size=2", "eval.max_images=6", "eval.num_display=3", *extra]


def _stats(run):
    return {s["step"]: s for s in map(json.loads, (run / "stats.jsonl").read_text().splitlines())}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("g2g")
    assert train.main(g2g_args(tmp, "g", "train.steps=3")) == 0
    return tmp, tmp / "g"


def test_pairs_have_different_identities_and_are_deterministic(tmp_path):
    from data.identity_pairs import IdentityPairs
    from data.synthetic import SyntheticFaces

    faces = SyntheticFaces(size=32, length=30, n_identities=3, cache_dir=str(tmp_path))
    pairs, again = IdentityPairs(faces, seed=1, partners=4), IdentityPairs(faces, seed=1, partners=4)
    assert len(pairs) == 120
    partners = [pairs.partner(k) for k in range(len(pairs))]
    assert all(faces.identities[k % 30] != faces.identities[j] for k, j in enumerate(partners))
    assert partners == [again.partner(k) for k in range(len(pairs))]
    assert partners != [IdentityPairs(faces, seed=2, partners=4).partner(k) for k in range(len(pairs))]
    assert len({partners[k] for k in range(0, 120, 30)}) > 1  # one image meets several partners
    item = pairs[(5, True)]
    assert int(item["identity"]) != int(item["identity2"]) and int(item["index2"]) == partners[5]
    assert torch.equal(item["image"], faces[(5, True)]["image"])
    with pytest.raises(ValueError, match="two identities"):
        IdentityPairs(SyntheticFaces(size=32, length=4, n_identities=1, cache_dir=str(tmp_path)))


def test_train_logs_every_term_and_writes_grids(trained):
    tmp, run = trained
    stats = _stats(run)
    assert sorted(stats) == [1, 2, 3]
    for s in stats.values():
        assert all(k in s and np.isfinite(s[k]) for k in TERMS)
    assert sorted(p.name for p in (run / "grids").glob("*.png")) == [
        "recon-0000000.png", "recon-0000003.png", "swap-0000000.png", "swap-0000003.png"]
    state = ckpt.load(run / ckpt.LATEST)
    assert state["step"] == 3 and set(state["optims"]) == {"gen", "dis"}
    assert {k.split(".")[0] for k in state["nets"]} == {"content_enc", "class_enc", "decoder", "disc"}
    # bit-exact resume: tests/test_method_contract.py (every method)


def test_zero_weights_drop_their_terms(tmp_path):
    assert train.main(g2g_args(tmp_path, "z", "train.steps=1", "model.gamma_c=0", "model.zeta=0",
                               "model.delta=0")) == 0
    s = _stats(tmp_path / "z")[1]
    assert "loss/cyc_content" not in s and "loss/dis" not in s and "loss/g_adv" not in s
    assert all(k in s for k in ("loss/long", "loss/short", "loss/cyc_id"))


def test_resnet50_vggface2_loader(tmp_path):
    from models.nets.g2g_nets import ResNet50VGGFace2, load_resnet50_vggface2

    torch.manual_seed(0)
    net = ResNet50VGGFace2().eval()
    sd = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "resnet50_ft.pth"
    torch.save(sd, path)
    loaded = load_resnet50_vggface2(path)
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(loaded(x), net(x)) and loaded(x).shape == (1, 2048)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    with pytest.raises(FileNotFoundError, match="not found"):
        load_resnet50_vggface2(tmp_path / "missing.pth")
    del sd["classifier.weight"]
    torch.save(sd, path)
    with pytest.raises(ValueError, match="classifier.weight"):
        load_resnet50_vggface2(path)


def _caffe_resnet50_reference():
    """torchvision's ResNet-50 with Caffe's strides (on the 1x1 reduce conv) and ceil-mode max pool: the
    architecture of the VGGFace2-pytorch release, whose weights use torchvision's key names."""
    from torchvision.models import resnet50

    ref = resnet50(num_classes=1)  # the 8631-way fc is added as zeros below (it does not reach pool5)
    ref.maxpool = torch.nn.MaxPool2d(3, 2, 0, ceil_mode=True)
    for layer in (ref.layer2, ref.layer3, ref.layer4):
        layer[0].conv1.stride, layer[0].conv2.stride = (2, 2), (1, 1)
    for m in ref.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial statistics, so a misplaced BN key shows
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.uniform_(-0.2, 0.2)
    return ref.eval()


def test_resnet50_vggface2_numpy_pickle_release(tmp_path):
    """resnet50_ft_weight.pkl (a pickle of numpy arrays, torchvision names, BGR input) loads into our layout
    and gives the reference network's pool5 features on the channel-reversed image."""
    import pickle

    from models.nets.g2g_nets import VGGFACE2_CLASSES, load_resnet50_vggface2

    torch.manual_seed(0)
    ref = _caffe_resnet50_reference()
    arrays = {k: v.numpy() for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}
    arrays["fc.weight"] = np.zeros((VGGFACE2_CLASSES, 2048), np.float32)
    arrays["fc.bias"] = np.zeros(VGGFACE2_CLASSES, np.float32)
    path = tmp_path / "resnet50_ft_weight.pkl"
    with open(path, "wb") as f:
        pickle.dump(arrays, f, protocol=4)  # the release is a Python 2 pickle: see test_weights for that format
    ours = load_resnet50_vggface2(path)
    x = torch.randn(2, 3, 64, 64) * 50  # RGB, mean-subtracted 0..255 scale
    with torch.no_grad():
        want = torch.nn.Sequential(*list(ref.children())[:-1])(x.flip(1)).flatten(1)
        torch.testing.assert_close(ours(x), want, rtol=1e-3, atol=1e-3)
    # a pickle of anything but arrays is refused in one line, without running its code
    with open(path, "wb") as f:
        pickle.dump({"conv1.weight": Path("x")}, f, protocol=2)
    with pytest.raises(ValueError) as err:
        load_resnet50_vggface2(path)
    assert str(err.value).startswith(f"{path} is not VGGFace2 resnet50_ft weights") and "\n" not in str(err.value)


def test_eval_table_and_baselines(trained, tmp_path):
    _, run = trained
    assert eval_cli.main(["--checkpoint", str(run / ckpt.LATEST), "--out", str(tmp_path)]) == 0
    rows = {r["result"]: r for r in json.loads((tmp_path / "metrics.json").read_text())}
    truth = "ground truth (true swap)"  # the identity_swap protocol: method, copy baselines, the true swap
    assert set(rows) == {"method", "copy identity source", "copy attribute source", truth}
    assert rows["copy attribute source"]["attr_l1"] == 0 and rows["copy identity source"]["id_l1"] == 0
    assert rows["copy attribute source"]["id_l1"] == pytest.approx(rows["copy identity source"]["attr_l1"])
    assert all(np.isfinite(r["gt_psnr"]) and r["gt_l1"] > 0 for k, r in rows.items() if k != truth)
    assert "gt_psnr" not in rows[truth] and rows[truth]["attr_l1"] > 0 and rows[truth]["id_l1"] > 0
    assert np.isfinite(rows["method"]["recon_psnr"])
    assert (tmp_path / "swap_grid.png").is_file() and (tmp_path / "swap_vs_ground_truth.png").is_file()


def test_frozen_resnet50_class_encoder_in_the_method(tmp_path):
    from core.config import load_config
    from models import build_method
    from models.nets.g2g_nets import ResNet50VGGFace2

    path = tmp_path / "resnet50_ft.pth"
    torch.save(ResNet50VGGFace2().state_dict(), path)
    over = ["model.class_encoder=resnet50_vggface2", "model.class_input_size=32", "model.nf=8", "model.nfd=8",
            "model.nf_mlp=16", "model.n_res_blks=1"]
    with pytest.raises(FileNotFoundError, match="class_weights"):
        build_method(load_config(ROOT / "configs/g2g_synth.yaml", over + [f"model.class_weights={tmp_path}/x.pth"]),
                     torch.device("cpu"))
    g = build_method(load_config(ROOT / "configs/g2g_synth.yaml", over + [f"model.class_weights={path}"]),
                     torch.device("cpu"))
    assert "class_enc" not in g.nets and g.class_code(torch.zeros(2, 3, 32, 32)).shape == (2, 2048)
    g.train()  # the frozen encoder stays in eval mode (the original's BN drift is not copied)
    assert not any(mod.training for mod in g.frozen["class_enc"].modules())


def test_train_class_encoder_reproduces_the_original_fine_tuning(tmp_path):
    """model.train_class_encoder=true: the ResNet-50 is in the G optimizer, gets gradients, changes, and its BN
    runs in train mode (batch statistics, running stats updated), as in the original's Lightning loop."""
    from core.config import load_config
    from models import build_method
    from core.step import StepContext
    from models.nets.g2g_nets import ResNet50VGGFace2

    path = tmp_path / "resnet50_ft.pth"
    torch.save(ResNet50VGGFace2().state_dict(), path)
    over = ["model.class_encoder=resnet50_vggface2", f"model.class_weights={path}", "model.class_input_size=32",
            "model.nf=8", "model.nfd=8", "model.nf_mlp=16", "model.n_res_blks=1", "model.train_class_encoder=true"]
    g = build_method(load_config(ROOT / "configs/g2g_synth.yaml", over), torch.device("cpu"))
    enc = g.nets["class_enc"].net
    in_opt = {id(p) for group in g.optims["gen"].param_groups for p in group["params"]}
    assert all(id(p) in in_opt and p.requires_grad for p in enc.parameters())
    assert enc.training and enc.conv1_7x7_s2_bn.training
    w0, mean0 = enc.conv1_7x7_s2.weight.clone(), enc.conv1_7x7_s2_bn.running_mean.clone()
    torch.manual_seed(0)
    batch = {"pairs": {"image": torch.rand(2, 3, 32, 32) * 2 - 1, "image2": torch.rand(2, 3, 32, 32) * 2 - 1}}
    g.train_step(batch, 0, StepContext(torch.device("cpu")))
    assert not torch.equal(enc.conv1_7x7_s2.weight, w0) and not torch.equal(enc.conv1_7x7_s2_bn.running_mean, mean0)
    frozen = build_method(load_config(ROOT / "configs/g2g_synth.yaml", over[:-1]), torch.device("cpu"))
    in_opt = {id(p) for group in frozen.optims["gen"].param_groups for p in group["params"]}
    assert not any(id(p) in in_opt for p in frozen.frozen["class_enc"].parameters())


def test_content_norm_option_keeps_or_drops_colour():
    """content_norm=in removes each image's per-channel colour offset from the content code; none keeps it."""
    from models.nets.g2g_nets import ContentEncoder

    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    shifted = x + torch.tensor([0.3, -0.2, 0.1])[:, None, None]  # the same image, global colour changed
    enc_in, enc_none = ContentEncoder(4, 1, 1, "in"), ContentEncoder(4, 1, 1, "none")
    assert not any(isinstance(m, torch.nn.InstanceNorm2d) for m in enc_none.modules())
    first = enc_in.net[0][:3]  # pad, conv, IN: the colour shift is a constant per channel after the conv
    torch.testing.assert_close(first(x), first(shifted), atol=1e-4, rtol=0)
    assert (enc_none(x) - enc_none(shifted)).abs().max() > 1e-3
    with pytest.raises(ValueError, match="in\\|none"):
        ContentEncoder(4, 1, 1, "bn")


def test_eval_weights_flag(trained, tmp_path, capsys):
    """eval.py --weights points a frozen net at a moved file; a missing file is a clear error, exit 2."""
    _, run = trained
    assert eval_cli.main(["--checkpoint", str(run / "checkpoint-latest.pt"), "--weights", "gone.pth"]) == 2
    assert "file not found: gone.pth (for model.class_weights)" in capsys.readouterr().err
    moved = tmp_path / "class.pth"
    moved.write_bytes(b"unused by the small class encoder")
    assert eval_cli.main(["--checkpoint", str(run / "checkpoint-latest.pt"), "--weights", f"class={moved}",
                          "--out", str(tmp_path / "ev")]) == 0


def test_celeba_identity_pairs_train_and_eval(tmp_path):
    """CelebA in its public layout (identity_CelebA.txt): pairs of different people, a short run, eval
    without ground truth (no gt columns, no truth grid)."""
    from tests.celeba_layout import write_celeba

    root = write_celeba(tmp_path, n=60)
    rng = np.random.default_rng(0)
    for f in (root / "img_align_celeba").iterdir():  # textured images: flat ones make every IN layer 0/0
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(f, quality=90)
    args = [a for a in g2g_args(tmp_path, "celeba") if not a.startswith(("--config", "data.cache_dir"))
            and not a.endswith("g2g_synth.yaml")]
    args = ["--config", str(ROOT / "configs/g2g_celeba.yaml"), *args, f"data.root={root}", "data.size=32",
            "model.class_input_size=null", "model.perceptual=l1", "data.cache=off", "train.steps=2",
            "eval.identity_judge_kind=small"]  # no judge: the dlib one is tested in test_identity_judge.py
    assert train.main(args) == 0
    from data.identity_pairs import IdentityPairs, labelled_faces
    from core.config import load_config

    cfg = load_config(ROOT / "configs/g2g_celeba.yaml", [f"data.root={root}", "data.size=32", "data.cache=off"])
    pairs = IdentityPairs(labelled_faces(cfg.data, "train"), partners=2)
    assert len(pairs) == 2 * 36  # the official train partition: the first 60% of the fixture
    assert all(pairs[k]["identity"] != pairs[k]["identity2"] for k in range(len(pairs)))
    out = tmp_path / "ev"
    assert eval_cli.main(["--checkpoint", str(tmp_path / "celeba" / "checkpoint-latest.pt"), "--out", str(out)]) == 0
    row = json.loads((out / "metrics.json").read_text())[0]
    assert "attr_l1" in row and "gt_psnr" not in row and (out / "swap_grid.png").is_file()
    assert not (out / "swap_vs_ground_truth.png").exists()


def test_celeba_without_identity_file_is_a_clear_error(tmp_path, capsys):
    from tests.celeba_layout import write_celeba

    root = write_celeba(tmp_path, n=20)
    (root / "identity_CelebA.txt").unlink()
    assert train.main(["--config", str(ROOT / "configs/g2g_celeba.yaml"), f"data.root={root}", "data.size=32",
                       f"run.dir={tmp_path}", "model.class_encoder=small", "model.perceptual=l1",
                       "data.cache=off", "train.steps=1"]) == 1
    assert "identity pairs need CelebA's identity labels" in capsys.readouterr().err


@pytest.fixture(scope="module")
def with_face_nets(tmp_path_factory):
    """A tiny face_nets run and a one-step G2G run on its class encoder (both configs' world: expression_scale 3)."""
    from core import checkpoint as ckpt

    tmp = tmp_path_factory.mktemp("g2g_face")
    face = ["--config", str(ROOT / "configs/face_nets_synth.yaml"), f"run.dir={tmp}", "run.name=face",
            f"data.cache_dir={tmp / 'cache'}", "data.size=32", "data.train_length=16", "data.test_length=8",
            "data.batch_size=4", "model.id_width=0.25", "model.analysis_width=0.25", "model.id_dim=16",
            "model.analysis_hidden=32", "train.steps=1"]
    assert train.main(face) == 0
    over = ["model.class_encoder=face_nets", f"model.class_weights={tmp / 'face' / ckpt.LATEST}", "train.steps=1"]
    assert train.main(g2g_args(tmp, "same", *over)) == 0
    return tmp, over


def test_class_encoder_of_another_world_is_refused(with_face_nets, capsys):
    """A face_nets class encoder trained at data.expression_scale=3 cannot serve a run of a world drawn at 1."""
    tmp, over = with_face_nets
    assert train.main([*g2g_args(tmp, "other", *over), "data.expression_scale=1"]) != 0
    assert "trained with data.expression_scale=3.0, this run's data has 1:" in capsys.readouterr().err


def test_expression_cue_script(with_face_nets, capsys):
    """scripts/expression_cue.py: an unblurred truth reads as the board's truth row; blur lowers its PSNR; a run's
    reconstruction row is its swap of each attribute source with itself, scored against that source; a blurred swap
    row is its swap blurred."""
    import importlib.util

    from core import checkpoint as ckpt
    from core.config import load_config
    from data.synthetic.counterfactual import identity_swap_pairs
    from evaluation import identity_swap as idswap
    from evaluation.identity_judge import build_identity_judge
    from models import load_method
    from models.nets.face_small import build_landmark_net

    spec = importlib.util.spec_from_file_location("expression_cue", ROOT / "scripts/expression_cue.py")
    cue = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cue)
    tmp, _ = with_face_nets
    judge, run = tmp / "face" / ckpt.LATEST, tmp / "same" / ckpt.LATEST
    capsys.readouterr()
    assert cue.main(["data.n_identities=6", "--config", str(ROOT / "configs/g2g_synth.yaml"), "--pairs", "6",
                     "--judge", str(judge), "--sigmas", "0", "1", "--checkpoints", str(run), "--blur-swaps"]) == 0
    rows = {ln.split(" | ")[0].lstrip("| "): [float(v) for v in ln.strip(" |").split(" | ")[1:]]
            for ln in capsys.readouterr().out.splitlines() if ln.startswith("| ") and "| PSNR |" not in ln}
    d = load_config(ROOT / "configs/g2g_synth.yaml", ["data.n_identities=6"]).data
    pairs = identity_swap_pairs(d, 6, 32)
    ident, analysis = build_identity_judge("small", judge), build_landmark_net(judge)
    truth = idswap.truth_score(pairs, ident, analysis)
    assert rows["0"][1:] == pytest.approx([truth[k] for k in ("id_sim", "pose_err", "expr_err", "lnd_err_px")],
                                          abs=6e-4)  # the table's rounding
    assert rows["0"][0] == 99.99 and rows["1"][0] < 40
    method, _, _ = load_method(run, device="cpu")
    rec = idswap.outputs(method, {**pairs, "id": pairs["attr"]}, 8, 32)
    assert rows[f"{run} reconstruction"][0] == pytest.approx(
        idswap.psnr(rec, pairs["attr_ref"]).mean().item(), abs=6e-3)
    swap = idswap.outputs(method, pairs, 8, 32)
    assert rows[f"{run} swap blurred 1"][0] == pytest.approx(
        idswap.psnr(cue.blur(swap, 1.0), pairs["gt"]).mean().item(), abs=6e-3)
    assert rows[f"{run} swap blurred 1"][0] != pytest.approx(rows[f"{run} swap"][0], abs=1e-3)
