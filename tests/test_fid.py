"""FID / KID maths against closed forms and brute force; the FID Inception loader; the stylegan2 evaluator."""
import numpy as np
import pytest
import torch

from metrics.fid import (FIDInception, build_extractor, fid_from_features, frechet_distance, kid_from_features,
                         load_fid_inception)


def test_frechet_distance_of_gaussians_has_the_closed_form():
    # diagonal covariances: sum (m1 - m2)^2 + (s1 - s2)^2 per dimension
    m1, m2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([2.0, 2.0, 1.5])
    expected = ((m1 - m2) ** 2).sum() + ((s1 - s2) ** 2).sum()
    assert frechet_distance(m1, np.diag(s1 ** 2), m2, np.diag(s2 ** 2)) == pytest.approx(expected, rel=1e-6)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 4))
    assert fid_from_features(x, x) == pytest.approx(0.0, abs=1e-6)
    assert fid_from_features(x, x + 3.0) == pytest.approx(4 * 9.0, rel=1e-6)


def test_kid_matches_brute_force_unbiased_mmd():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(6, 3)), rng.normal(1.0, 1.0, size=(6, 3))
    k = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
    m = 6
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    mean, std = kid_from_features(x, y, subsets=3, subset_size=6)
    assert mean == pytest.approx(xx + yy - 2 * xy, rel=1e-9) and std == pytest.approx(0.0, abs=1e-12)
    a, b = rng.normal(size=(1000, 3)), rng.normal(size=(1000, 3))
    same, _ = kid_from_features(a, b, subsets=20, subset_size=500)
    shifted, _ = kid_from_features(a, b + 1.0, subsets=20, subset_size=500)
    assert abs(same) < 0.05 * shifted


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    net = inception_v3(weights=None, aux_logits=False, init_weights=True, num_classes=1008)  # the file's layout
    path = tmp_path_factory.mktemp("fid") / "pt_inception.pth"
    torch.save(net.state_dict(), path)
    return path, net


def test_fid_inception_loads_the_reference_layout_and_uses_its_pooling(inception_file):
    path, ref = inception_file
    model = load_fid_inception(path)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    feats = model(x)
    assert feats.shape == (2, 2048)
    # the same weights through torchvision's own blocks give other features: the FID pooling is in use
    ref.eval().fc = torch.nn.Identity()
    with torch.no_grad():
        plain = ref(torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False))
    assert not torch.allclose(plain, feats, atol=1e-4)


def test_fid_inception_errors(inception_file, tmp_path):
    with pytest.raises(ValueError, match="feature_weights"):
        load_fid_inception(None)
    with pytest.raises(FileNotFoundError):
        load_fid_inception(tmp_path / "none.pth")
    state = torch.load(inception_file[0])
    del state["Mixed_7c.branch_pool.conv.weight"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="Mixed_7c.branch_pool"):
        load_fid_inception(tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="inception or face_identity"):
        build_extractor("vgg", None)
    assert isinstance(FIDInception(), torch.nn.Module)


def test_stylegan2_eval_writes_fid_rows(tmp_path):
    import eval as eval_cli
    import train
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    common = [f"run.dir={tmp_path}", f"data.cache_dir={tmp_path / 'cache'}", "data.train_length=16",
              "data.test_length=8", "train.image_every=100", "train.grid_size=2"]
    assert train.main(["--config", str(root / "configs/face_nets_synth.yaml"), "run.name=face", *common,
                       "data.batch_size=4", "train.steps=1", "model.id_width=0.25", "model.analysis_width=0.25",
                       "model.id_dim=16", "model.analysis_hidden=16"]) == 0
    assert train.main(["--config", str(root / "configs/stylegan2_synth.yaml"), "run.name=g", *common,
                       "data.batch_size=4", "train.steps=1", "model.width=0.03125"]) == 0
    assert eval_cli.main(["--checkpoint", str(tmp_path / "g" / "checkpoint-latest.pt"), "--out", str(tmp_path / "e"),
                          f"eval.feature_weights={tmp_path / 'face' / 'checkpoint-latest.pt'}", "eval.max_images=12",
                          "eval.kid_subset_size=6"]) == 0
    import json

    rows = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert [r["images"] for r in rows] == ["generator, truncation 1.0", "generator, truncation 0.7",
                                           "other real renders (floor)"]
    assert all(r["fid"] >= -1e-6 and np.isfinite(r["kid"]) for r in rows)
    assert (tmp_path / "e" / "samples.png").is_file()
