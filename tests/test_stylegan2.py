"""StyleGAN2: public checkpoint layout, loader round trip and errors, generator semantics, the training method,
scripts/generate_w_dataset.py and data/w_codes.py."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import train
from core import checkpoint as ckpt
from core.config import load_config
from data.folders import DatasetLayoutError
from data.w_codes import WCodeDataset, image_path
from models.nets.stylegan2 import (Discriminator, Generator, ModulatedConv2d, load_generator, save_public_format,
                                   upfirdn2d)
from data import w_codes
from scripts import generate_w_dataset as gen_w

ROOT = Path(__file__).resolve().parent.parent
TINY = ["data.size=32", "data.train_length=16", "data.test_length=4", "data.batch_size=4", "model.style_dim=16",
        "model.n_mlp=2", "model.width=0.03125", "model.d_reg_every=2", "model.pl_weight=2", "model.g_reg_every=2",
        "train.ema_kimg=0.01", "train.log_every=1", "train.image_every=2", "train.grid_size=2"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These nets are tiny: one intra-op thread is faster, and much faster on a shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_g(size=32, **kw):
    torch.manual_seed(0)
    return Generator(size, style_dim=16, n_mlp=2, width=1 / 16, **kw).eval()


# ----------------------------------------------------------------------------- the public layout

def expected_generator_keys(size=256, dim=512, n_mlp=8, cm=2) -> dict:
    """Keys and shapes of the public PyTorch StyleGAN2 generator, written out from the format description."""
    ch = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm}
    keys = {}
    for i in range(1, n_mlp + 1):
        keys[f"style.{i}.weight"], keys[f"style.{i}.bias"] = (dim, dim), (dim,)
    keys["input.input"] = (1, ch[4], 4, 4)

    def modconv(p, cin, cout, k):
        keys.update({f"{p}.conv.weight": (1, cout, cin, k, k), f"{p}.conv.modulation.weight": (cin, dim),
                     f"{p}.conv.modulation.bias": (cin,)})

    def styled(p, cin, cout, up):
        modconv(p, cin, cout, 3)
        keys.update({f"{p}.noise.weight": (1,), f"{p}.activate.bias": (cout,)})
        if up:
            keys[f"{p}.conv.blur.kernel"] = (4, 4)

    def rgb(p, cin, up):
        modconv(p, cin, 3, 1)
        keys[f"{p}.bias"] = (1, 3, 1, 1)
        if up:
            keys[f"{p}.upsample.kernel"] = (4, 4)

    styled("conv1", ch[4], ch[4], False)
    rgb("to_rgb1", ch[4], False)
    log_size, cin = int(math.log2(size)), ch[4]
    for k, res in enumerate(2 ** i for i in range(3, log_size + 1)):
        styled(f"convs.{2 * k}", cin, ch[res], True)
        styled(f"convs.{2 * k + 1}", ch[res], ch[res], False)
        rgb(f"to_rgbs.{k}", ch[res], True)
        cin = ch[res]
    for i in range((log_size - 2) * 2 + 1):
        r = 4 if i == 0 else 2 ** ((i + 5) // 2)
        keys[f"noises.noise_{i}"] = (1, 1, r, r)
    return keys


def expected_discriminator_keys(size=256, cm=2) -> dict:
    ch = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm}
    keys = {"convs.0.0.weight": (ch[size], 3, 1, 1), "convs.0.1.bias": (ch[size],)}
    cin = ch[size]
    for j, i in enumerate(range(int(math.log2(size)), 2, -1), start=1):
        cout = ch[2 ** (i - 1)]
        keys.update({f"convs.{j}.conv1.0.weight": (cin, cin, 3, 3), f"convs.{j}.conv1.1.bias": (cin,),
                     f"convs.{j}.conv2.0.kernel": (4, 4), f"convs.{j}.conv2.1.weight": (cout, cin, 3, 3),
                     f"convs.{j}.conv2.2.bias": (cout,), f"convs.{j}.skip.0.kernel": (4, 4),
                     f"convs.{j}.skip.1.weight": (cout, cin, 1, 1)})
        cin = cout
    keys.update({"final_conv.0.weight": (ch[4], ch[4] + 1, 3, 3), "final_conv.1.bias": (ch[4],),
                 "final_linear.0.weight": (ch[4], ch[4] * 16), "final_linear.0.bias": (ch[4],),
                 "final_linear.1.weight": (1, ch[4]), "final_linear.1.bias": (1,)})
    return keys


def test_state_dict_layout_matches_public_format_at_256px():
    with torch.device("meta"):
        g, d = Generator(256), Discriminator(256)
    got = {k: tuple(v.shape) for k, v in g.state_dict().items()}
    assert got == expected_generator_keys()
    assert len(got) == 135 and g.n_latent == 14 and g.num_layers == 13
    assert got["convs.0.conv.weight"] == (1, 512, 512, 3, 3) and got["convs.9.activate.bias"] == (256,)
    assert got["to_rgbs.5.conv.weight"] == (1, 3, 128, 1, 1) and got["noises.noise_12"] == (1, 1, 256, 256)
    assert {k: tuple(v.shape) for k, v in d.state_dict().items()} == expected_discriminator_keys()
    assert len(d.state_dict()) == 50


def test_fir_buffers_and_upsampling_gain():
    g, d = tiny_g(), Discriminator(32, width=1 / 16)
    assert g.state_dict()["convs.0.conv.blur.kernel"].sum() == pytest.approx(4.0)
    assert g.state_dict()["to_rgbs.0.upsample.kernel"].sum() == pytest.approx(4.0)
    assert d.state_dict()["convs.1.skip.0.kernel"].sum() == pytest.approx(1.0)
    up = g.to_rgbs[0].upsample(torch.ones(1, 2, 4, 4))  # zero insertion x blur x4 keeps a constant constant
    assert up.shape == (1, 2, 8, 8) and torch.allclose(up[..., 2:-2, 2:-2], torch.ones(1, 2, 4, 4))
    k = torch.zeros(4, 4)
    k[0, 0] = 1.0  # the FIR is a true convolution (kernel flipped), as upfirdn2d
    assert upfirdn2d(torch.arange(4.0).view(1, 1, 2, 2), k, pad=(3, 0))[0, 0].tolist() == [[0, 1], [2, 3]]


# ----------------------------------------------------------------------------- generator semantics

def test_w_broadcast_noise_modes_and_mixing():
    g = tiny_g()
    z = torch.randn(3, 16)
    w = g.mapping(z)
    with torch.no_grad():
        a = g.synthesis(w, noise_mode="const")
        b = g.synthesis(w[:, None].expand(-1, g.n_latent, -1).clone(), noise_mode="const")
        img, ws = g(z, noise_mode="const")
        assert a.shape == (3, 3, 32, 32) and torch.equal(a, b) and torch.equal(img, a)
        assert ws.shape == (3, g.n_latent, 16)
        g.noises.noise_3.mul_(0).add_(3.0)
        for p in g.parameters():
            if p.shape == (1,):  # noise strengths
                p.fill_(0.5)
        assert not torch.equal(g.synthesis(w, "const"), g.synthesis(w, "none"))
        assert not torch.equal(g.synthesis(w, "random"), g.synthesis(w, "random"))
        _, ws = g(z, mix_z=torch.randn(3, 16), mix_prob=1.0)
        same = [torch.equal(ws[:, i], w) for i in range(g.n_latent)]
        assert same[0] and not all(same) and same == sorted(same, reverse=True)  # w up to a cutoff, then w2
    with pytest.raises(ValueError, match="w must be"):
        g.synthesis(torch.zeros(2, 5, 16))
    with pytest.raises(ValueError, match="noise_mode"):
        g.synthesis(w, noise_mode="fixed")


def test_training_and_inference_modconv_paths_agree():
    g = tiny_g()
    z = torch.randn(4, 16)
    with torch.no_grad():
        fused = g.eval().synthesis(g.mapping(z))
        separate = g.train().synthesis(g.mapping(z))
    torch.testing.assert_close(fused, separate, rtol=1e-4, atol=1e-5)


def test_demodulation_gives_unit_scale_independent_of_style_magnitude():
    torch.manual_seed(0)
    conv = ModulatedConv2d(64, 64, 3, style_dim=16).eval()
    x, w = torch.randn(4, 64, 16, 16), torch.randn(4, 16)
    with torch.no_grad():
        out = conv(x, w)
        assert 0.8 < out[..., 1:-1, 1:-1].std() < 1.25
        conv.modulation.weight.mul_(7.0)
        conv.modulation.bias.mul_(7.0)
        torch.testing.assert_close(conv(x, w), out, rtol=1e-4, atol=1e-5)


def test_mean_w_is_seeded_and_leaves_the_global_rng_alone():
    g = tiny_g()
    state = torch.get_rng_state()
    a = g.mean_w(256)
    assert torch.equal(torch.get_rng_state(), state) and torch.equal(a, g.mean_w(256)) and a.shape == (16,)


def test_discriminator_logits_for_any_batch():
    d = Discriminator(32, width=1 / 16)
    for n in (1, 5, 6, 8):
        assert d(torch.randn(n, 3, 32, 32)).shape == (n, 1)


# ----------------------------------------------------------------------------- loader

@pytest.mark.parametrize("lr_mlp", [0.01, 0.05])
def test_public_format_round_trip(tmp_path, lr_mlp):
    g = tiny_g(64, lr_mlp=lr_mlp)
    d = Discriminator(64, width=1 / 16)
    path = save_public_format(tmp_path / "sg.pt", g, g=g, d=d)
    payload = torch.load(path, weights_only=False)
    assert {"g_ema", "g", "d", "latent_avg", "args"} <= set(payload) and payload["latent_avg"].shape == (16,)
    loaded, w_avg = load_generator(path)
    assert loaded.hparams() == {"size": 64, "style_dim": 16, "n_mlp": 2, "channel_multiplier": 2,
                                "width": 1 / 16, "lr_mlp": 0.01}
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    torch.testing.assert_close(w_avg, g.mean_w())
    z = torch.randn(3, 16)
    with torch.no_grad():
        want, got = g.synthesis(g.mapping(z)), loaded.synthesis(loaded.mapping(z))
    if lr_mlp == 0.01:
        assert torch.equal(want, got)
    else:  # mapping weights were rescaled to the public lr_mlp: equal up to rounding
        torch.testing.assert_close(want, got, rtol=1e-4, atol=1e-5)


def test_loader_errors_are_clear(tmp_path):
    g = tiny_g()
    good = torch.load(save_public_format(tmp_path / "good.pt", g), weights_only=False)

    def save(payload, name):
        torch.save(payload, tmp_path / name)
        return tmp_path / name

    with pytest.raises(FileNotFoundError, match="not found"):
        load_generator(tmp_path / "absent.pt")
    with pytest.raises(ValueError, match="expected a dict"):
        load_generator(save([1, 2], "list.pt"))
    with pytest.raises(ValueError, match="no 'g_ema'"):
        load_generator(save({"g": good["g_ema"]}, "no_ema.pt"))
    missing = dict(good["g_ema"])
    del missing["convs.1.noise.weight"]
    with pytest.raises(ValueError, match=r"1 missing keys: convs.1.noise.weight"):
        load_generator(save({"g_ema": missing}, "missing.pt"))
    with pytest.raises(ValueError, match=r"1 unexpected keys: extra.weight"):
        load_generator(save({"g_ema": {**good["g_ema"], "extra.weight": torch.zeros(1)}}, "extra.pt"))
    with pytest.raises(ValueError, match="shape mismatch.*conv1.activate.bias"):
        load_generator(save({"g_ema": {**good["g_ema"], "conv1.activate.bias": torch.zeros(7)}}, "shape.pt"))
    renamed = {("convs.1.noise.w" if k == "convs.1.noise.weight" else k): v for k, v in good["g_ema"].items()}
    with pytest.raises(ValueError, match=r"1 renamed keys: expected convs.1.noise.weight, found convs.1.noise.w$"):
        load_generator(save({"g_ema": renamed}, "renamed.pt"))
    with pytest.raises(ValueError, match="not a StyleGAN2 generator"):
        load_generator(save({"g_ema": {"foo": torch.zeros(1)}}, "foreign.pt"))
    bad_avg = {**good, "latent_avg": torch.zeros(5)}
    with pytest.raises(ValueError, match="latent_avg"):
        load_generator(save(bad_avg, "avg.pt"))


# ----------------------------------------------------------------------------- training method

def run_train(tmp_path, name, *extra):
    argv = ["--config", str(ROOT / "configs/stylegan2_synth.yaml"), f"run.dir={tmp_path}", f"run.name={name}",
            f"data.cache_dir={tmp_path / 'cache'}", *TINY, *extra]
    assert train.main(argv) == 0
    return tmp_path / name / ckpt.LATEST


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return run_train(tmp_path_factory.mktemp("sg"), "tiny", "train.steps=2")


def test_tiny_training_run_writes_grids_and_resume_is_exact(tiny_run, tmp_path):
    state = ckpt.load(tiny_run)
    assert state["method"] == "stylegan2" and state["step"] == 2 and state["ema"] is not None
    assert state["pl_mean"] > 0  # step 0 ran the path-length regulariser
    grids = sorted(p.name for p in (tiny_run.parent / "grids").iterdir())
    assert "samples-0000002.png" in grids and "truncated-0000002.png" in grids
    logs = [json.loads(ln) for ln in (tiny_run.parent / "stats.jsonl").read_text().splitlines()]
    assert {"loss/d", "loss/g", "loss/r1", "loss/pl"} <= set(logs[0])

    straight = ckpt.load(run_train(tmp_path, "straight", "train.steps=4"))
    run_train(tmp_path, "split", "train.steps=2")
    resumed = ckpt.load(run_train(tmp_path, "split", "train.steps=4", "--resume", "auto"))
    assert resumed["step"] == 4 and torch.equal(resumed["pl_mean"], straight["pl_mean"])
    for section in ("nets", "ema"):
        for k, v in straight[section].items():
            assert torch.equal(v, resumed[section][k]), f"{section}.{k} differs after resume"


def test_training_checkpoint_loads_as_generator(tiny_run):
    g, w_avg = load_generator(tiny_run)
    state = ckpt.load(tiny_run)
    ema = {k[2:]: v for k, v in state["ema"].items() if k.startswith("g.")}
    assert all(torch.equal(v, ema[k]) for k, v in g.state_dict().items())
    assert g.size == 32 and g.style_dim == 16 and w_avg.shape == (16,) and not g.training


def test_only_synthetic_data():
    cfg = load_config(ROOT / "configs/stylegan2_synth.yaml", ["data.name=folders"])
    from models.stylegan2 import StyleGAN2

    with pytest.raises(ValueError, match="synthetic only"):
        StyleGAN2.datasets(cfg, "train")


# ----------------------------------------------------------------------------- w dataset

def test_generate_w_dataset_and_read_it(tiny_run, tmp_path, capsys):
    out = tmp_path / "w"
    args = ["--generator", str(tiny_run), "--out", str(out), "--count", "6", "--truncation", "0.7",
            "--seed", "3", "--batch", "4", "--device", "cpu"]
    assert gen_w.main(args) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["count"] == 6 and meta["size"] == 32 and meta["style_dim"] == 16 and meta["seed"] == 3
    w = np.load(out / "w.npy")
    assert w.shape == (6, 16) and w.dtype == np.float32 and image_path(out, 5).is_file()

    g, w_avg = load_generator(tiny_run)
    z = torch.from_numpy(np.random.default_rng(3).standard_normal((6, 16)).astype(np.float32))
    with torch.no_grad():
        w_ref = g.truncate(g.mapping(z), 0.7, w_avg)
        imgs = w_codes.to_uint8(g.synthesis(torch.from_numpy(w), noise_mode="const"))
    torch.testing.assert_close(torch.from_numpy(w), w_ref)
    for i in range(6):
        png = np.asarray(Image.open(image_path(out, i)))
        assert png.shape == (32, 32, 3) and np.abs(png.astype(int) - imgs[i].astype(int)).max() <= 1

    tr, te = WCodeDataset(out, split="train", val_count=2), WCodeDataset(out, split="test", val_count=2)
    assert len(tr) == 4 and len(te) == 2 and [int(te[k]["index"]) for k in range(2)] == [4, 5]
    item = tr[1]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert -1 <= item["image"].min() and item["image"].max() <= 1 and item["index"].dtype == torch.int64
    assert torch.equal(item["w"], torch.from_numpy(w[1]))
    assert torch.equal(tr[(1, True)]["image"], item["image"].flip(-1)) and torch.equal(tr[(1, True)]["w"], item["w"])
    assert WCodeDataset(out, size=16, val_count=2)[0]["image"].shape == (3, 16, 16)

    # the z sequence does not depend on --batch (w only up to float rounding); --size resizes
    z4, z5 = (torch.cat([z for _, z in w_codes.z_codes(3, 6, 16, b)]) for b in (4, 5))
    assert torch.equal(z4, z5)
    other = tmp_path / "w16"
    assert gen_w.main([*args[:3], str(other), *args[4:-3], "5", "--size", "16", "--device", "cpu"]) == 0
    np.testing.assert_allclose(np.load(other / "w.npy"), w, rtol=1e-5, atol=1e-6)
    assert Image.open(image_path(other, 0)).size == (16, 16)

    # a non-empty folder is refused without --force
    capsys.readouterr()
    assert gen_w.main(args) == 1 and "not empty" in capsys.readouterr().err
    assert gen_w.main([*args, "--force"]) == 0 and np.array_equal(np.load(out / "w.npy"), w)


def test_w_dataset_layout_errors(tmp_path):
    root = tmp_path / "ds"
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        WCodeDataset(root)
    root.mkdir()
    np.save(root / "w.npy", np.zeros((3, 4), np.float32))
    with pytest.raises(DatasetLayoutError, match="meta.json is missing"):
        WCodeDataset(root)
    meta = {"count": 4, "size": 8, "style_dim": 4, "n_latent": 4, "truncation": 1.0, "seed": 0, "generator": "x"}
    (root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetLayoutError, match=r"meta.json says float32 \(4, 4\)"):
        WCodeDataset(root, val_count=1)
    np.save(root / "w.npy", np.zeros((4, 4), np.float32))
    with pytest.raises(DatasetLayoutError, match="images are missing"):
        WCodeDataset(root, val_count=1)
