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
from evaluation.factor_encoding import expression_accuracy, lfw_verification, pose_swap
from metrics.disentanglement import (dci_disentanglement, importance_matrix, mig, synthetic_verification,
                                     variance_share_matrix, verification_accuracy, verification_pairs)

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
    text = (out / "disentanglement.md").read_text()
    assert "R2 identity" in text and "R2 scale" in text and "share style" in text  # + pose values, shares
    row = json.loads((out / "metrics.json").read_text())[0]
    for key in ("dci_disentanglement", "mig", "verif_identity", "verif_other_parts", "roll_error_deg",
                "pose_swap_r2_donor", "pose_swap_r2_own", "pose_recon_r2", "pose_share_max_other"):
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


def test_variance_share_toy_case():
    """A part whose first dim is factor a (var 1) and second independent noise (var 1): a explains half of it."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4000, 1)), rng.normal(size=(4000, 2))
    parts = {"p": np.concatenate([a, rng.normal(size=(4000, 1))], 1), "q": 3 * b @ rng.normal(size=(2, 5))}
    share = variance_share_matrix(parts, {"a": a, "b": b}, 2000)
    assert share[0] == pytest.approx([0.5, 0.0], abs=0.03) and share[1] == pytest.approx([0.0, 1.0], abs=1e-3)


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

    def inference(self):
        import contextlib

        return contextlib.nullcontext(self)

    def encode(self, x):
        m = x.mean((2, 3))
        pad = torch.zeros(x.shape[0], 29)
        return {"pose": m, "identity": torch.cat([m, pad], 1), "style": torch.cat([m, pad], 1),
                "expression": torch.cat([m, pad], 1)}


class _Spy(_Fixed):
    """Records the largest batch it was asked to encode."""
    largest = 0

    def encode(self, x):
        self.largest = max(self.largest, x.shape[0])
        return super().encode(x)


class _PoseFromPart(_Fixed):
    """Decodes to an image whose mean colour is the pose part (re-encoding returns it): the ideal decoder; with
    ``leak`` it renders the pose leaked into the style part instead (style = pose @ leak), ignoring the pose part."""

    def __init__(self, leak=None):
        self.back = None if leak is None else torch.linalg.pinv(torch.as_tensor(leak, dtype=torch.float32))

    def decode(self, parts):
        pose = parts["pose"] if self.back is None else parts["style"] @ self.back
        return pose[:, :, None, None].expand(-1, -1, 4, 4)


def test_pose_swap_scores_a_decoder_that_follows_or_ignores_the_pose_part():
    rng = np.random.default_rng(0)
    pose, leak = rng.normal(size=(200, 3)), rng.normal(size=(3, 32))
    parts = {"pose": pose, "identity": rng.normal(size=(200, 32)), "style": pose @ leak,
             "expression": rng.normal(size=(200, 32))}
    follows = pose_swap(_PoseFromPart(), parts, pose, 64)
    assert follows["pose_swap_r2_donor"] == pytest.approx(1.0, abs=1e-5) and follows["pose_swap_r2_own"] < 0.1
    ignores = pose_swap(_PoseFromPart(leak), parts, pose, 64)
    assert ignores["pose_swap_r2_own"] == pytest.approx(1.0, abs=1e-4) and ignores["pose_swap_r2_donor"] < 0.1
    assert follows["pose_recon_r2"] == pytest.approx(1.0, abs=1e-5) == ignores["pose_recon_r2"]


def test_lfw_and_affectnet_paths(tmp_path):
    from data.lfw import LFWPairs
    from tests.test_real_loaders import make_lfw, save

    root = make_lfw(tmp_path)
    spy = _Spy()
    r = lfw_verification(spy, root, 16, 4)
    assert r["folds"] == 2 and 0.0 <= r["accuracy"] <= 1.0 and spy.largest <= 4  # streamed, never all pairs
    pairs = LFWPairs(root, size=16)  # reference: every pair's two images encoded directly
    a = torch.stack([_Fixed().encode(pairs[i]["image"][None])["identity"][0] for i in range(len(pairs))])
    b = torch.stack([_Fixed().encode(pairs[i]["image2"][None])["identity"][0] for i in range(len(pairs))])
    want = verification_accuracy(((a - b) ** 2).sum(1).numpy(), pairs.same, pairs.fold, np.arange(0, 4.0001, 0.01))
    assert r == pytest.approx(want)
    lms = ";".join(f"{30 + k % 5}.0;{40 + k % 7}.0" for k in range(68))
    rows = []
    for k, e in enumerate([0, 1, 0, 1, 0, 1]):
        rel = f"{k}/img{k}.jpg"
        save(tmp_path / "aff" / "Manually_Annotated_Images" / rel, 90, 110, colour=(200 * e + 20, 40, 40))
        rows.append(f"{rel},10,20,60,70,{lms},{e},0.1,-0.1")
    for name in ("training.csv", "validation.csv"):
        (tmp_path / "aff" / name).write_text("\n".join(rows) + "\n")
    spy = _Spy()
    acc = expression_accuracy(spy, tmp_path / "aff", 16, 4)
    assert acc["accuracy"] == 1.0 and spy.largest <= 4  # the class is the image colour


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
    from models.mad import _triplet_idx, identity_triplets, label_triplets

    torch.manual_seed(0)
    ids = torch.arange(4).repeat_interleave(3)
    emb = torch.nn.functional.normalize(torch.randn(12, 8), dim=1)
    pos, neg, valid = identity_triplets(emb, ids, 5)
    assert (ids[pos] == ids).all() and (pos != torch.arange(12)).all() and (ids[neg] != ids).all() and valid.all()
    labels = torch.arange(12.0)[:, None]
    pos, neg = label_triplets(labels, 10)
    assert ((labels[pos] - labels).abs().squeeze(1) == 1).all()
    # the original's ranks count the anchor as rank 0: negatives are ranks 10 and 11 of 12, i.e. for anchor 0
    # (others at distances 1..11, no ties) the samples 10 and 11, each about half of the time
    negs = torch.stack([label_triplets(labels, 10)[1][0] for _ in range(400)])
    assert set(negs.tolist()) == {10, 11} and 0.4 < (negs == 10).float().mean() < 0.6
    assert ((labels[neg] - labels).abs().squeeze(1) >= 5).all()  # ranks 10, 11 of a middle anchor: distance 5, 6
    with pytest.raises(ValueError, match="no same-identity positive"):
        identity_triplets(emb, torch.arange(12), 5)
    # fewer than 5 other-identity samples: the draw still covers 5 slots, and an anchor whose draw falls past the
    # last other-identity sample is left out (identity 0 has 2 others: kept 2/5 of the time; identity 1, 4: 4/5)
    ids = torch.tensor([0, 0, 0, 0, 1, 1])
    draws = [identity_triplets(emb[:6], ids, 5) for _ in range(500)]
    kept = torch.stack([d[2] for d in draws]).float().mean(0)
    assert torch.allclose(kept, torch.tensor([0.4] * 4 + [0.8] * 2), atol=0.08)
    assert all((ids[neg][valid] != ids[valid]).all() for _, neg, valid in draws)
    # no other identity at all: every anchor is left out and the loss is 0
    _, neg, valid = identity_triplets(emb[:4], torch.zeros(4, dtype=torch.long), 5)
    m = load_config(ROOT / "configs/mad_synth_ae.yaml").model
    assert not valid.any() and _triplet_idx(emb[:4], torch.tensor([1, 0, 3, 2]), neg, valid, m).item() == 0


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


# --- fidelity to the original (browatbn2/MAD) --------------------------------------------------------
def _count(net):
    return sum(p.numel() for p in net.parameters())


def test_q_is_the_original_resnet18_variant():
    """Up to 128 px Q is torchvision's ResNet-18 (same tensors, same output); at 256 px the original's extra
    stage: 11,379,491 parameters with a 99-d fc."""
    from torchvision.models import resnet18

    from models.nets.mad_nets import ResNetEncoder

    torch.manual_seed(0)
    tv = resnet18(num_classes=99).eval()
    q = ResNetEncoder(128, 99, 1.0).eval()
    assert {k: v.shape for k, v in q.state_dict().items()} == {k: v.shape for k, v in tv.state_dict().items()}
    q.load_state_dict(tv.state_dict())
    x = torch.randn(2, 3, 64, 64)  # the 64 px layout is the same network
    with torch.no_grad():
        assert torch.allclose(q(x), tv(x), atol=1e-5)
    big = ResNetEncoder(256, 99, 1.0)
    assert _count(big) == 11_379_491
    extra = set(big.state_dict()) - set(tv.state_dict())
    assert extra and all(k.startswith(("layer0.", "layer1.0.downsample.")) for k in extra)
    assert big.layer1[0].conv1.stride == (2, 2) and big(torch.randn(1, 3, 256, 256)).shape == (1, 99)


def test_d_and_p_convs_as_the_original():
    """D: five stride-2 convs (four at 64 px, so the last 4x4 conv still fits), no conv biases; P's RGB ConvT
    has no bias."""
    from models.nets.mad_nets import Decoder, ImageDisc

    for size, n in ((256, 5), (128, 5), (64, 4), (32, 3)):
        d = ImageDisc(size, 0.125)
        convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
        assert sum(c.stride == (2, 2) for c in convs) == n and all(c.bias is None for c in convs), size
        assert d(torch.randn(2, 3, size, size)).shape == (2,)
    assert Decoder(64, 99, 0.125).out.bias is None


def _resnet18_file(path, batch_count=0):
    """A torchvision ResNet-18 state_dict file (random weights), its BatchNorm batch counters at ``batch_count``."""
    from torchvision.models import resnet18

    torch.manual_seed(1)
    state = resnet18(weights=None).state_dict()
    for k in state:
        if k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(batch_count)
    torch.save(state, path)
    return state


def test_q_init_copies_exactly_the_matching_imagenet_tensors(tmp_path):
    from models.mad import init_q_from_resnet18
    from models.nets.mad_nets import ResNetEncoder

    state = _resnet18_file(tmp_path / "resnet18-test.pth", batch_count=7)  # counters are never copied
    torch.manual_seed(0)
    q = ResNetEncoder(256, 99, 1.0)
    before = {k: v.clone() for k, v in q.state_dict().items()}
    report = init_q_from_resnet18(q, tmp_path / "resnet18-test.pth")
    after = q.state_dict()
    weights = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}  # BN counters: left
    same = {k for k in weights if k in after and after[k].shape == weights[k].shape}
    assert "fc.weight" not in same and "layer2.0.downsample.0.weight" in same and len(same) == 100
    for k, v in after.items():
        assert torch.equal(v, state[k] if k in same else before[k]), k
    assert all(int(v) == 0 for k, v in after.items() if k.endswith("num_batches_tracked"))
    kept = len([k for k in after if not k.endswith("num_batches_tracked")]) - len(same)
    assert "100 tensors loaded, 2 skipped (fc.weight, fc.bias)" in report
    assert f"{kept} of Q's kept random" in report and "layer0." in report


def test_weights_flag_loads_q_and_wrong_files_are_one_line_errors(tmp_path, capsys):
    from core.config import load_config
    from models import weights_overrides
    from models.mad import MAD

    good = tmp_path / "resnet18-test.pth"
    state = _resnet18_file(good)
    over = weights_overrides("mad", [str(good)])
    assert over == [f"model.q_init={good}"]
    cfg = load_config(ROOT / "configs/mad_synth_ae.yaml", ["data.size=32", "model.width=1.0", "model.hidden=32",
                                                           "model.dz_hidden=32", *over])
    mad = MAD(cfg, torch.device("cpu"))
    assert torch.equal(mad.nets["q"].layer3[1].conv2.weight, state["layer3.1.conv2.weight"])
    assert "Q initialised from" in capsys.readouterr().out
    other = tmp_path / "not-resnet18.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3)}, other)
    base = ["--config", str(ROOT / "configs/mad_synth_ae.yaml"), f"run.dir={tmp_path}", "train.steps=1", *TINY]
    for extra, message in (([f"--weights={other}"], "expected torchvision's resnet18 state_dict"),
                           ([f"--weights=resnet18={good}"], "no ResNet-18 tensor matches Q's shapes"),
                           ([f"--weights={good}", "model.encoder=compact"], "needs model.encoder=resnet18"),
                           (["model.encoder=vgg"], "'model.encoder' (from override 'model.encoder=vgg') must be one of resnet18 | compact")):
        assert train.main(base + extra) != 0
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1, err


def _tiny_mad(phase="ae", *extra):
    from models.mad import MAD

    cfg = load_config(ROOT / f"configs/mad_synth_{phase}.yaml", [*TINY, "data.cache_dir=null", *extra])
    torch.manual_seed(0)
    return MAD(cfg, torch.device("cpu")), cfg


def _tiny_batch(cfg, step=0):
    ds = build_identity_groups(cfg, "train")
    return {"faces": _batch(ds, step)}


def _spy_steps(mad, calls, record=lambda opt: [p.grad.clone() for g in opt.param_groups for p in g["params"]]):
    """Append (optimizer name, ``record(optimizer)``) to ``calls`` at every optimizer step, before it runs."""
    for name, opt in mad.optims.items():
        orig = opt.step

        def spy(*a, _name=name, _orig=orig, _opt=opt, **k):
            calls.append((_name, record(_opt)))
            return _orig(*a, **k)
        opt.step = spy


def test_update_order_discriminators_first_and_q_steps_twice(tmp_path):
    """Step 0 (D_z and D both update): the logged adversarial terms are those of the updated discriminators, and
    Q's Adam steps twice: first on the latent adversarial gradient alone (checked against autograd on the
    starting Q and the updated D_z), right after D_z and before D; then on the sum, whose gradient is the one at
    the starting Q although Q has stepped in between."""
    import copy

    import torch.nn.functional as F

    from losses import bce_logits
    from core.step import StepContext

    mad, cfg = _tiny_mad("ae", f"data.cache_dir={tmp_path}")
    for mod in mad.nets["dz"].modules():  # dropout off: D_z becomes a deterministic function
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.0
    start = copy.deepcopy(mad.nets)
    calls = []
    _spy_steps(mad, calls)
    batch = _tiny_batch(cfg)
    x = flatten_groups(batch["faces"])["image"]
    logs = mad.train_step(batch, 0, StepContext(torch.device("cpu")))
    assert [c[0] for c in calls] == ["dz", "q", "d", "p", "q"]
    assert mad.optims["q"].state[next(mad.nets["q"].parameters())]["step"] == 2
    z = start["q"].train()(x)  # BN in training mode: the batch statistics, as in the step
    dz, d = mad.nets["dz"], mad.nets["d"]  # after the step: D_z and D each updated once
    z_adv = bce_logits(dz(z), 1.0)
    assert logs["loss/z_adv"] == pytest.approx(z_adv.item(), rel=1e-5)
    x_hat = start["p"].train()(z)
    assert logs["loss/img_adv"] == pytest.approx(bce_logits(d(x_hat), 1.0).item(), rel=1e-5)
    assert logs["loss/rec"] == pytest.approx((F.l1_loss(x_hat, x) * 127.5).item(), rel=1e-5)
    q0 = list(start["q"].parameters())
    first = torch.autograd.grad(z_adv, q0, retain_graph=True)
    for got, want in zip(calls[1][1], first):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-7)
    total = z_adv + F.l1_loss(x_hat, x) * 127.5 + bce_logits(d(x_hat), 1.0)
    for got, want in zip(calls[4][1], torch.autograd.grad(total, q0)):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))
    assert any(not torch.allclose(a, b) for a, b in zip(calls[4][1], calls[1][1]))  # the sum differs
    # the old single-step order is still selectable
    mad1, cfg1 = _tiny_mad("ae", f"data.cache_dir={tmp_path}", "model.q_zadv_step=false")
    mad1.train_step(batch, 0, StepContext(torch.device("cpu")))
    assert mad1.optims["q"].state[next(mad1.nets["q"].parameters())]["step"] == 1


@pytest.mark.parametrize("q_zadv_step", [True, False])
def test_joint_cycle_runs_the_q_of_the_first_q_step(tmp_path, q_zadv_step):
    """Joint phase, as the original: Q steps on the latent adversarial term before the disentanglement cycle, so
    the cycle's Q pass (G->P->Q->E) runs on the stepped weights while z = Q(x) ran on the starting ones. Without
    the first step both passes see the starting weights."""
    from core.step import StepContext

    mad, cfg = _tiny_mad("joint", f"data.cache_dir={tmp_path}", f"model.q_zadv_step={q_zadv_step}")
    conv = next(mod for mod in mad.nets["q"].modules() if isinstance(mod, torch.nn.Conv2d))
    w0 = conv.weight.detach().clone()
    seen = []  # the first conv's weights each Q forward runs on (weight copies included)
    conv.register_forward_pre_hook(lambda mod, args: seen.append(mod.weight.detach().clone()))
    calls = []
    _spy_steps(mad, calls, record=lambda opt: conv.weight.detach().clone())
    mad.train_step(_tiny_batch(cfg), 0, StepContext(torch.device("cpu")))
    assert [c[0] for c in calls] == ["dz", *(["q"] if q_zadv_step else []), "d", "disent", "p", "q"]
    assert len(seen) == 2 and torch.equal(seen[0], w0)
    w1 = w0
    if q_zadv_step:  # the spy records before each step: at D's step, Q has taken its first one
        w1 = calls[2][1]
        assert not torch.equal(w1, w0)
    assert torch.equal(seen[1], w1)
    assert not torch.equal(conv.weight.detach(), w1)  # the second Q step followed


def test_joint_zrec_reaches_q_and_aug_carries_the_part_weight(tmp_path):
    """L_zrec's gradient reaches z directly as well as through E and G (z not detached), and L_aug of the
    cycled part is scaled by that part's weight (the original doubles both L_f and L_aug of expression)."""
    from models.mad import source_labels

    mad, cfg = _tiny_mad("joint", f"data.cache_dir={tmp_path}", "model.w_feat=0", "model.w_cycle=0",
                         "model.w_aug=0")
    b = flatten_groups(_tiny_batch(cfg)["faces"])
    sources = {"faces": (slice(0, len(b["image"])), source_labels("faces", b))}
    z = torch.randn(len(b["image"]), 99, requires_grad=True)
    loss, z_rec = mad._disent_losses(z, mad.nets["e"](z), sources, 0, {})
    got = torch.autograd.grad(loss, z)[0]
    z2 = z.detach().requires_grad_()
    want = torch.autograd.grad(5.0 * 4.0 * (z2 - mad.nets["g"](mad.nets["e"](z2))).abs().mean(), z2)[0]
    assert torch.allclose(got, want, atol=1e-7) and got.abs().sum() > 0
    # L_aug: the same step and RNG draw with w_expression 2 vs 1 (expression is the cycled part at step 3)
    aug = {}
    for w in (1.0, 2.0):
        m, c = _tiny_mad("joint", f"data.cache_dir={tmp_path}", f"model.w_expression={w}")
        m._set_modes("joint")
        logs = {}
        torch.manual_seed(5)
        m._disent_losses(z.detach(), m.nets["e"](z.detach()), sources, 3, logs)
        aug[w] = logs["loss/aug"]
    assert aug[2.0] == pytest.approx(2 * aug[1.0], rel=1e-5) and aug[1.0] > 0
    assert load_config(ROOT / "configs/methods/mad.yaml").model.w_expression == 2.0


def test_triplet_distance_has_the_original_epsilon():
    from models.mad import _triplet_idx

    m = load_config(ROOT / "configs/mad_synth_ae.yaml").model
    emb = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.1, 0.0]], requires_grad=True)
    h = _triplet_idx(emb, torch.tensor([1, 0, 0]), torch.tensor([2, 2, 1]), torch.ones(3, dtype=torch.bool), m)
    d0, d1 = (1e-8) ** 0.5, (0.01 + 1e-8) ** 0.5  # anchor == positive: sqrt(0 + 1e-8), not 0
    want = ((d0 - d1 + 0.2) * 2 + 0.2) / 3  # anchors 0, 1: d(a,p) = d0, d(a,n) = d1; anchor 2: both d1
    assert h.item() == pytest.approx(want, rel=1e-6)
    assert torch.isfinite(torch.autograd.grad(h, emb)[0]).all()


def test_p_gets_no_share_of_the_disentanglement_loss_unless_asked(tmp_path):
    from models.mad import source_labels

    for trains_p in (False, True):
        mad, cfg = _tiny_mad("joint", f"data.cache_dir={tmp_path}", f"model.cycle_trains_p={trains_p}")
        mad._set_modes("joint")
        b = flatten_groups(_tiny_batch(cfg)["faces"])
        z = mad.nets["q"](b["image"])
        loss, _ = mad._disent_losses(z, mad.nets["e"](z), {"faces": (slice(None), source_labels("faces", b))}, 0, {})
        grads = torch.autograd.grad(loss, [*mad.nets["p"].parameters(), *mad.nets["q"].parameters()],
                                    allow_unused=True)
        n_p = len(list(mad.nets["p"].parameters()))
        p_grad = sum(float(g.abs().sum()) for g in grads[:n_p] if g is not None)
        assert (p_grad > 0) == trains_p and sum(float(g.abs().sum()) for g in grads[n_p:] if g is not None) > 0


def test_pose_target_scale_multiplies_the_regression_targets():
    from models.mad import feature_loss

    m = load_config(ROOT / "configs/mad_synth_ae.yaml", ["model.pose_target_scale=10"]).model
    batch = {"f_pose": torch.tensor([[0.1, -0.2, 0.05, 1.4], [0.0, 0.1, -0.1, 1.3]])}
    emb = torch.tensor([[1.0, -2.0, 0.0], [0.0, 0.0, 0.0]])
    assert feature_loss("pose", emb, batch, m).item() == pytest.approx((0.5 ** 2 + 1 + 1) / 6)
