"""Method 5 (MAD): identity batches, the three phases chained with --init, loss logging, DCI, LFW/AffectNet
metric paths and eval.py on a tiny checkpoint."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import eval as eval_cli
import train
from core.config import load_config
from data.identity_batches import FactorFaces, IdentityGroups, build_identity_groups, flatten_groups
from data.sampler import StepBatchSampler
from data.synthetic import SyntheticFaces
from metrics.mad import (dci_disentanglement, expression_accuracy, importance_matrix, lfw_verification, mig,
                         synthetic_verification, verification_accuracy, verification_pairs)

ROOT = Path(__file__).resolve().parent.parent
TINY = ["data.train_length=96", "data.test_length=24", "data.n_identities=10", "data.size=32",
        "data.batch_size=4", "train.log_every=1", "train.grid_size=2", "model.width=0.125", "model.hidden=32",
        "model.dz_hidden=32", "eval.max_images=24", "eval.num_display=2", "eval.batch_size=8"]
AE = {"loss/rec", "loss/z_adv", "loss/img_adv"}
DIS = {"loss/zrec", "loss/f_pose", "loss/f_identity", "loss/f_style", "loss/f_expression", "loss/cycle", "loss/aug",
       "loss/disent"}


def _batch(ds, step, seed=0):
    s = StepBatchSampler(len(ds), 4, seed, "faces", start_step=step)
    return torch.utils.data.default_collate([ds[i] for i in s.batch_at(step)])


def test_identity_batches_have_positives_and_are_deterministic(tmp_path):
    faces = SyntheticFaces(32, 96, 0, "train", 10, cache_dir=str(tmp_path))
    ds = IdentityGroups(FactorFaces(faces), group_size=3, seed=0)
    for step in range(5):
        b = flatten_groups(_batch(ds, step))
        ids = b["identity"]
        same = (ids[:, None] == ids[None, :]).sum(1) - 1
        assert (same >= 2).all() and b["image"].shape == (12, 3, 32, 32) and b["f_pose"].shape == (12, 4)
        again = flatten_groups(_batch(IdentityGroups(FactorFaces(faces), group_size=3, seed=0), step))
        assert torch.equal(b["image"], again["image"]) and torch.equal(ids, again["identity"])
    # flipped items carry the mirrored pose (tx, roll negated)
    plain, flip = ds.items[0], ds.items[(0, True)]
    assert torch.allclose(flip["f_pose"], plain["f_pose"] * torch.tensor([-1.0, 1, -1, 1]))
    with pytest.raises(ValueError, match="group_size"):
        IdentityGroups(FactorFaces(faces), group_size=1)


def _run(tmp, phase, steps=2, *extra):
    args = ["--config", str(ROOT / f"configs/mad_synth_{phase}.yaml"), f"run.dir={tmp}", f"run.name={phase}",
            f"data.cache_dir={tmp / 'cache'}", f"train.steps={steps}", *TINY, *extra]
    assert train.main(args) == 0
    return [json.loads(ln) for ln in (tmp / phase / "stats.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def phases(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mad")
    logs = {"ae": _run(tmp, "ae", 4)}
    logs["disentangle"] = _run(tmp, "disentangle", 2, "--init", str(tmp / "ae" / "checkpoint-latest.pt"))
    logs["joint"] = _run(tmp, "joint", 4, "--init", str(tmp / "disentangle" / "checkpoint-latest.pt"))
    return tmp, logs


def test_phases_log_their_losses(phases):
    _, logs = phases
    keys = {p: set().union(*[r.keys() for r in recs]) for p, recs in logs.items()}
    assert AE <= keys["ae"] and not DIS & keys["ae"] and {"loss/dz", "loss/d"} <= keys["ae"]
    assert DIS <= keys["disentangle"] and not (AE | {"loss/dz", "loss/d"}) & keys["disentangle"]
    assert AE | DIS | {"loss/dz", "loss/d"} <= keys["joint"]
    assert "loss/d" in logs["ae"][0] and "loss/d" not in logs["ae"][1] and "loss/dz" in logs["ae"][2]


def test_init_chains_and_disentangle_freezes_the_ae(phases):
    tmp, _ = phases
    ae = torch.load(tmp / "ae" / "checkpoint-latest.pt", weights_only=False)["nets"]
    dis = torch.load(tmp / "disentangle" / "checkpoint-latest.pt", weights_only=False)["nets"]
    joint = torch.load(tmp / "joint" / "checkpoint-latest.pt", weights_only=False)["nets"]
    for k in ae:  # Q, P (weights and BN statistics), D_z and D unchanged by the disentangle phase
        if k.split(".")[0] in ("q", "p", "dz", "d"):
            assert torch.equal(ae[k], dis[k]), k
    assert not torch.equal(ae["e.trunk.0.weight"], dis["e.trunk.0.weight"])
    assert not torch.equal(dis["q.fc.weight"], joint["q.fc.weight"])


def test_eval_writes_table_heatmap_and_grid(phases):
    tmp, _ = phases
    out = tmp / "eval"
    assert eval_cli.main(["--checkpoint", str(tmp / "joint" / "checkpoint-latest.pt"), "--out", str(out)]) == 0
    for f in ("disentanglement.md", "disentanglement.png", "swap_grid.png", "metrics.json"):
        assert (out / f).is_file(), f
    assert "R2 identity" in (out / "disentanglement.md").read_text()
    row = json.loads((out / "metrics.json").read_text())[0]
    for key in ("dci_disentanglement", "mig", "verif_identity", "verif_other_parts", "roll_error_deg"):
        assert key in row, key


def test_mig_toy_cases():
    """One code dim per factor gives MIG 1; a factor copied into two dims gives 0; an unrelated code ~0."""
    rng = np.random.default_rng(0)
    v = rng.integers(0, 5, size=(2000, 3)).astype(float)
    assert mig(v, v)["mig"] == pytest.approx(1.0, abs=0.01)  # the empirical MI of independent dims is ~0, not 0
    assert mig(np.concatenate([v, v], 1), v)["mig"] == pytest.approx(0.0, abs=1e-12)
    assert mig(rng.normal(size=(2000, 3)), v)["mig"] < 0.02
    noisy = v + 0.3 * rng.normal(size=v.shape)  # continuous codes: binned, still each factor's own dim
    assert 0.3 < mig(noisy, v)["mig"] < 1.0
    assert mig(v, np.concatenate([v, np.ones((2000, 1))], 1))["per_factor"].shape == (3,)  # constant skipped


def test_synthetic_verification_pairs_and_accuracy():
    ids = np.repeat(np.arange(50), 4)
    i, j, same, fold = verification_pairs(ids)
    assert len(i) == 2 * len(ids) and same.mean() == 0.5 and set(fold) == set(range(10))
    assert np.array_equal(ids[i] == ids[j], same == 1) and (i != j).all()
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(50, 8))
    clean = {"identity": centres[ids] + 0.05 * rng.normal(size=(len(ids), 8)), "pose": rng.normal(size=(len(ids), 3))}
    assert synthetic_verification(clean, ids, ["identity"])["accuracy"] > 0.98
    assert abs(synthetic_verification(clean, ids, ["pose"])["accuracy"] - 0.5) < 0.1


def test_dci_toy_cases():
    assert dci_disentanglement(np.eye(4)) == pytest.approx(1.0)
    assert dci_disentanglement(np.ones((4, 4))) == pytest.approx(0.0, abs=1e-12)
    assert dci_disentanglement(np.array([[2.0, 0], [0.5, 0.5]])) == pytest.approx(2 / 3)  # D = 1, 0; rho = 2/3, 1/3
    rng = np.random.default_rng(0)
    f = {k: rng.normal(size=(400, 2)) for k in "abc"}
    code = np.concatenate(list(f.values()), 1)
    assert dci_disentanglement(importance_matrix(code, f)) > 0.95
    mixed = code @ rng.normal(size=(6, 6))
    assert dci_disentanglement(importance_matrix(mixed, f)) < 0.5


def test_verification_folds():
    dist = np.array([0.1, 0.2, 0.9, 0.8] * 3)
    same = np.array([1, 1, 0, 0] * 3)
    fold = np.repeat([0, 1, 2], 4)
    assert verification_accuracy(dist, same, fold)["accuracy"] == 1.0
    flipped = same.copy()
    flipped[-1] = 1  # fold 2 gets one error at the threshold chosen on folds 0, 1
    r = verification_accuracy(dist, flipped, fold)
    assert r["accuracy"] == pytest.approx((1 + 1 + 0.75) / 3) and r["folds"] == 3


class _Fixed:
    """Stands in for MAD: parts from the mean colour of the image, no training needed."""
    device = torch.device("cpu")

    def encode(self, x, nets=None):
        m = x.mean((2, 3))
        pad = torch.zeros(x.shape[0], 29)
        return {"pose": m, "identity": torch.cat([m, pad], 1), "style": torch.cat([m, pad], 1),
                "expression": torch.cat([m, pad], 1)}


def test_lfw_and_affectnet_paths(tmp_path):
    from tests.test_real_loaders import make_lfw, save

    root = make_lfw(tmp_path)
    r = lfw_verification(_Fixed(), None, root, 16, 4)
    assert r["folds"] == 2 and 0.0 <= r["accuracy"] <= 1.0
    lms = ";".join(f"{30 + k % 5}.0;{40 + k % 7}.0" for k in range(68))
    rows = []
    for k, e in enumerate([0, 1, 0, 1, 0, 1]):
        rel = f"{k}/img{k}.jpg"
        save(tmp_path / "aff" / "Manually_Annotated_Images" / rel, 90, 110, colour=(200 * e + 20, 40, 40))
        rows.append(f"{rel},10,20,60,70,{lms},{e},0.1,-0.1")
    for name in ("training.csv", "validation.csv"):
        (tmp_path / "aff" / name).write_text("\n".join(rows) + "\n")
    acc = expression_accuracy(_Fixed(), None, tmp_path / "aff", 16, 4)
    assert acc["accuracy"] == 1.0  # the class is the image colour


def test_config_defaults_and_dims():
    cfg = load_config(ROOT / "configs/mad_synth_joint.yaml")
    assert cfg.model.phase == "joint" and sum(cfg.model.dims[k] for k in cfg.model.dims) == 99
    assert list(cfg.model.pose_targets) == [0, 1, 2] and cfg.eval.lfw_root is None
    ds = build_identity_groups(load_config(ROOT / "configs/mad_synth_ae.yaml", ["data.train_length=64",
                                                                               "data.n_identities=8",
                                                                               "data.cache_dir=null",
                                                                               "data.size=32"]), "train")
    assert len(ds) >= 1


def test_triplet_sampling_rules():
    from models.mad import identity_triplets, label_triplets

    torch.manual_seed(0)
    ids = torch.arange(4).repeat_interleave(3)
    emb = torch.nn.functional.normalize(torch.randn(12, 8), dim=1)
    pos, neg, valid = identity_triplets(emb, ids, 5)
    assert (ids[pos] == ids).all() and (pos != torch.arange(12)).all() and (ids[neg] != ids).all() and valid.all()
    labels = torch.arange(12.0)[:, None]
    pos, neg = label_triplets(labels, 10)
    assert ((labels[pos] - labels).abs().squeeze(1) == 1).all()
    assert ((labels[neg] - labels).abs().squeeze(1) >= 6).all()  # ranks 10.. of 11 others
    with pytest.raises(ValueError, match="no same-identity positive"):
        identity_triplets(emb, torch.arange(12), 5)


# --- real data: VGGFace2 + AffectNet in their public layouts ---------------------------------------
REAL_TINY = ["data.size=32", "data.batch_size=4", "model.group_size=4", "train.log_every=1", "train.grid_size=2",
             "model.width=0.125", "model.hidden=32", "model.dz_hidden=32", "eval.max_images=24",
             "eval.num_display=2", "eval.batch_size=8", "data.test_length=24", "data.n_identities=10"]


def make_vggface2_ids(root, n_ids=5, per_id=8, n_test=2):
    """VGGFace2 train/ + test/ identity folders with loose_bb CSVs; boxes 110 px tall (kept by min_height 100)."""
    from tests.test_real_loaders import save

    for split, ids, per in (("train", range(n_ids), per_id), ("test", range(100, 100 + n_test), 2)):
        rows = ["NAME_ID,X,Y,W,H"]
        for i in ids:
            for k in range(per):
                name = f"n{i + 2:06d}/{k:04d}_01"
                save(root / split / f"{name}.jpg", 100, 140, colour=(40 * (i % 6), 20 * k, 90))
                rows.append(f'"{name}",10,15,80,110')
        (root / "bb_landmark").mkdir(parents=True, exist_ok=True)
        (root / "bb_landmark" / f"loose_bb_{split}.csv").write_text("\n".join(rows) + "\n")
    return root


def make_affectnet(root, n_train=20, n_val=4):
    """AffectNet training.csv / validation.csv (header, 68 landmarks) and Manually_Annotated_Images/."""
    from tests.test_real_loaders import save

    lms = ";".join(f"{30 + k % 5}.0;{40 + k % 7}.0" for k in range(68))
    for name, n in (("training.csv", n_train), ("validation.csv", n_val)):
        rows = [",".join(("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
                          "facial_landmarks", "expression", "valence", "arousal"))]
        for k in range(n):
            rel = f"{k % 3}/{name[0]}{k}.jpg"
            e = k % 8
            save(root / "Manually_Annotated_Images" / rel, 90, 110, colour=(30 * e, 40, 20 + 5 * k))
            rows.append(f'{rel},10,20,60,70,"{lms}",{e},{(k % 5) / 5 - 0.4:.2f},{(k % 7) / 7 - 0.4:.2f}')
        (root / name).write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def real_roots(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("real_data")
    return make_vggface2_ids(tmp / "vggface2"), make_affectnet(tmp / "affectnet")


def _real_cfg(roots, phase="ae", *extra):
    return load_config(ROOT / f"configs/mad_real_{phase}.yaml",
                       [f"data.vggface2_root={roots[0]}", f"data.affectnet_root={roots[1]}", *REAL_TINY, *extra])


def test_real_datasets_vggface2_groups_hold_positives(real_roots):
    from models.mad import MAD, labelled_parts, source_labels

    cfg = _real_cfg(real_roots)
    ds = MAD.datasets(cfg, "train")
    assert list(ds) == ["vggface2", "affectnet"]
    assert len(ds["vggface2"]) == 10  # 5 identities x 2 repeats (8 images each, groups of 4)
    assert len(ds["affectnet"]) == 5  # 20 rows in chunks of 4
    for step in range(4):
        b = flatten_groups(_batch(ds["vggface2"], step))
        ids = b["identity"]
        same = (ids[:, None] == ids[None, :]).sum(1) - 1
        assert b["image"].shape == (16, 3, 32, 32) and (same >= 3).all()
        assert set(ids.tolist()) <= {2, 3, 4, 5, 6}
        a = flatten_groups(_batch(ds["affectnet"], step))
        assert a["image"].shape == (16, 3, 32, 32) and {"expression", "valence", "arousal"} <= set(a)
        assert labelled_parts(source_labels("vggface2", b)) == ("identity",)
        assert labelled_parts(source_labels("affectnet", a)) == ("expression",)
    # the chunks of one epoch cover each usable AffectNet image once
    assert sorted(np.concatenate([ds["affectnet"].indices(j) for j in range(5)]).tolist()) == list(range(20))
    test = MAD.datasets(cfg, "test")  # VGGFace2 test/, AffectNet validation.csv: flat images for the grids
    assert len(test["vggface2"]) == 4 and len(test["affectnet"]) == 4 and test["affectnet"][0]["image"].ndim == 3


def test_expression_label_distance_counts_the_class():
    from models.mad import label_triplets

    torch.manual_seed(0)
    va = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.2, 0.0]])
    pos, _ = label_triplets(va, 10)
    assert pos[0] == 1
    pos, _ = label_triplets(va, 10, torch.tensor([0, 1, 0]), 0.25)  # 0.1 + 0.25 > 0.2: same class is nearer
    assert pos[0] == 2 and pos[2] == 0


def _run_real(tmp, roots, phase, steps, *extra):
    args = ["--config", str(ROOT / f"configs/mad_real_{phase}.yaml"), f"run.dir={tmp}", f"run.name={phase}",
            f"data.vggface2_root={roots[0]}", f"data.affectnet_root={roots[1]}", f"data.cache_dir={tmp / 'cache'}",
            f"train.steps={steps}", *REAL_TINY, *extra]
    assert train.main(args) == 0
    name = next(a.split("=", 1)[1] for a in reversed(args) if a.startswith("run.name="))
    return [json.loads(ln) for ln in (tmp / name / "stats.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def real_phases(tmp_path_factory, real_roots):
    tmp = tmp_path_factory.mktemp("mad_real")
    logs = {"ae": _run_real(tmp, real_roots, "ae", 2)}
    logs["disentangle"] = _run_real(tmp, real_roots, "disentangle", 2, "--init", str(tmp / "ae" / "checkpoint-latest.pt"))
    logs["joint"] = _run_real(tmp, real_roots, "joint", 2, "--init", str(tmp / "disentangle" / "checkpoint-latest.pt"))
    logs["affectnet_only"] = _run_real(tmp, real_roots, "disentangle", 1, "run.name=affectnet_only",
                                       "model.real_datasets=[affectnet]", "--init",
                                       str(tmp / "ae" / "checkpoint-latest.pt"))
    return tmp, logs


def test_real_phases_log_the_labelled_feature_losses(real_phases):
    _, logs = real_phases
    keys = {p: set().union(*[r.keys() for r in recs]) for p, recs in logs.items()}
    real_dis = {"loss/zrec", "loss/f_identity", "loss/f_expression", "loss/cycle", "loss/aug", "loss/disent"}
    assert AE <= keys["ae"] and not DIS & keys["ae"]
    assert real_dis <= keys["disentangle"] and not AE & keys["disentangle"]
    assert AE | real_dis <= keys["joint"]
    for p in ("disentangle", "joint", "affectnet_only"):  # no pose labels, no VoxCeleb: no pose or style loss
        assert not {"loss/f_pose", "loss/f_style"} & keys[p], p
    assert "loss/f_expression" in keys["affectnet_only"] and "loss/f_identity" not in keys["affectnet_only"]
    for recs in logs.values():
        assert all(np.isfinite(v) for r in recs for k, v in r.items() if k.startswith("loss/"))
    # kimg counts groups: 2 datasets x 4 groups per step
    assert logs["ae"][0]["kimg"] == pytest.approx(8 / 1000)


def test_real_checkpoint_evaluates(real_phases, real_roots):
    """eval.py needs no training data (the training roots may be gone)."""
    tmp, _ = real_phases
    out = tmp / "eval"
    assert eval_cli.main(["--checkpoint", str(tmp / "joint" / "checkpoint-latest.pt"), "--out", str(out),
                          f"eval.affectnet_root={real_roots[1]}", "data.vggface2_root=/no/such/folder"]) == 0
    rows = json.loads((out / "metrics.json").read_text())
    assert any("expr_accuracy" in r for r in rows)


@pytest.mark.parametrize("extra, message", [
    (["data.vggface2_root=null"], "set data.vggface2_root"),
    (["data.affectnet_root=/no/such/folder"], "data.affectnet_root /no/such/folder does not exist"),
    (["model.real_datasets=[vggface2, voxceleb]"], "'voxceleb' is not supported"),
    (["model.real_datasets=[]"], "needs model.real_datasets"),
    (["data.name=celeba"], "data.name synthetic | real"),
])
def test_real_data_errors(real_roots, tmp_path, capsys, extra, message):
    args = ["--config", str(ROOT / "configs/mad_real_ae.yaml"), f"run.dir={tmp_path}",
            f"data.vggface2_root={real_roots[0]}", f"data.affectnet_root={real_roots[1]}", "train.steps=1",
            *REAL_TINY, *extra]
    assert train.main(args) != 0
    assert message in capsys.readouterr().err
