"""Face alignment (data/align.py, preprocess.py --align): the presets' geometry on drawn points, then real
photos with dlib's landmarks (the optional face extras): re-detected landmarks land on the preset's template;
a folder with a non-image, a face-less photo and a two-face photo is processed with its report. Folders of own
photos: output names (photos sharing a name, --all's numbered faces), nothing replaced without --force,
16-bit / floating-point images, output folders that are the photo folder or cannot be written."""
import os
import struct
import sys
import tempfile
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

import data.align_folder
import preprocess
from core.cli import RunError
from data.align import (CELEBA_TEMPLATE, PRESETS, align, apply_affine, ffhq_affine, fit_similarity, key_points,
                        template)
from data.align_folder import output_names, to_uint8
from tests.cli_runner import files_in, one_error
from tests.real_photos import EXTRAS, astronaut, grace_hopper, need_dlib, no_face, sdist_photo, side_by_side


def _face(cx, cy, d, angle) -> np.ndarray:
    """68 points whose eyes, nose tip and mouth corners sit at a face of eye distance ``d``, turned by ``angle``."""
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    parts = {"le": (-0.5, 0), "re": (0.5, 0), "nose": (0, 0.55), "ml": (-0.4, 1.0), "mr": (0.4, 1.0)}
    p = {k: np.array([cx, cy]) + rot @ (np.array(v) * d) for k, v in parts.items()}
    lm = np.zeros((68, 2))
    lm[36:42], lm[42:48], lm[30], lm[48], lm[54] = p["le"], p["re"], p["nose"], p["ml"], p["mr"]
    return lm


def _spots(w, h, points, sigma) -> Image.Image:
    """Black photo with a Gaussian spot (peak 255) at each point."""
    a = np.zeros((h, w))
    r = int(4 * sigma)
    for x, y in points:
        x0, y0 = int(x) - r, int(y) - r
        yy, xx = np.mgrid[max(y0, 0):min(y0 + 2 * r, h), max(x0, 0):min(x0 + 2 * r, w)]
        a[yy, xx] += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))
    return Image.fromarray(np.uint8(np.clip(a * 255, 0, 255))).convert("RGB")


def _centroids(img, guesses, radius) -> np.ndarray:
    g = img[..., 0].astype(np.float64)
    yy, xx = np.mgrid[:g.shape[0], :g.shape[1]]
    out = []
    for x, y in guesses:
        m = ((xx - x) ** 2 + (yy - y) ** 2 < radius ** 2) * g
        out.append([(m * xx).sum() / m.sum(), (m * yy).sum() / m.sum()])
    return np.array(out)


def test_similarity_fit_recovers_a_known_map_and_least_squares():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 200, (5, 2))
    s, t = 0.7, np.deg2rad(20)
    true = np.array([[s * np.cos(t), -s * np.sin(t), 12.0], [s * np.sin(t), s * np.cos(t), -30.0]])
    assert np.allclose(fit_similarity(src, apply_affine(true, src)), true)
    # noisy targets: the residual is orthogonal to every direction of the similarity family (normal equations)
    dst = apply_affine(true, src) + rng.normal(0, 2, src.shape)
    A = fit_similarity(src, dst)
    r = (apply_affine(A, src) - dst).reshape(-1)
    basis = [np.column_stack([src[:, 0], src[:, 1]]), np.column_stack([-src[:, 1], src[:, 0]]),
             np.tile([1.0, 0.0], (5, 1)), np.tile([0.0, 1.0], (5, 1))]
    assert all(abs(r @ b.reshape(-1)) < 1e-8 for b in basis)


def test_similarity_fit_matches_scikit_image():
    transform = pytest.importorskip("skimage.transform", reason="scikit-image (a face extra) is not installed")
    rng = np.random.default_rng(1)
    src, dst = rng.uniform(0, 200, (5, 2)), rng.uniform(0, 112, (5, 2))
    cls = transform.SimilarityTransform
    if hasattr(cls, "from_estimate"):  # scikit-image >= 0.26
        ref = cls.from_estimate(src, dst)
    else:
        ref = cls()
        ref.estimate(src, dst)
    assert np.allclose(fit_similarity(src, dst), ref.params[:2], atol=1e-6)


def test_ffhq_quad_of_an_upright_face_by_hand():
    # eyes (80, 100), (120, 100), mouth corners (85, 140), (115, 140): eye_to_eye (40, 0), eye_to_mouth (0, 40);
    # x = (40, 0) - rot90(0, 40) = (80, 0), length max(2*40, 1.8*40) = 80; centre (100, 104); side 160 px
    lm = np.zeros((68, 2))
    lm[36:42], lm[42:48], lm[48], lm[54], lm[30] = (80, 100), (120, 100), (85, 140), (115, 140), (100, 120)
    A = ffhq_affine(lm, 256)
    assert np.allclose(A, [[256 / 160, 0, 128 - 100 * 256 / 160 - 0.5], [0, 256 / 160, 128 - 104 * 256 / 160 - 0.5]])
    assert np.allclose(apply_affine(A, [[20, 24], [180, 184]]), [[-0.5, -0.5], [255.5, 255.5]])  # quad corners


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("w,h,where,d,angle,sigma", [
    (800, 600, (0.45, 0.4), 120, 0.2, 6),      # inside the photo
    (300, 260, (0.15, 0.2), 60, -0.3, 3),      # near the corner: padding (ffhq: reflect + blur; celeba: edge)
    (1600, 1200, (0.5, 0.5), 300, 0.1, 15),    # large photo: shrunk first
])
def test_presets_put_points_where_their_affine_says(preset, w, h, where, d, angle, sigma):
    """Bright spots drawn at the key points come out where the returned affine maps them, and that affine
    follows the preset's rule (template fit, FFHQ quad)."""
    lm = _face(w * where[0], h * where[1], d, angle)
    pts = key_points(preset, lm)
    out, A = align(_spots(w, h, pts, sigma), lm, preset)
    assert out.shape == {"ffhq": (256, 256, 3), "celeba": (218, 178, 3), "arcface": (112, 112, 3)}[preset]
    want = apply_affine(A, pts)
    scale = np.sqrt(abs(np.linalg.det(A[:, :2])))
    got = _centroids(out, want, max(3.0, 3 * sigma * scale))
    assert np.abs(got - want).max() < 0.3
    if preset == "ffhq":
        assert np.allclose(A, ffhq_affine(lm, 256))
    else:
        assert np.allclose(A, fit_similarity(pts, template(preset, out.shape[1])))


def test_celeba_size_scales_the_frame():
    lm = _face(200, 200, 80, 0.0)
    img = Image.new("RGB", (400, 400), (90, 120, 150))
    out, A = align(img, lm, "celeba", 356)
    assert out.shape == (436, 356, 3) and np.allclose(out, (90, 120, 150))  # replicated edges: no black
    assert np.allclose(template("celeba", 356), (CELEBA_TEMPLATE + 0.5) * 2 - 0.5)


# -- real photos, dlib landmarks ---------------------------------------------------------------------------

TOLERANCE = {"ffhq": 3.0, "celeba": 4.0, "arcface": 8.0}  # px; arcface: the 5-point fit's own residual
# (on the astronaut's and Obama's broad smiles the mouth corners are 6-8 px off insightface's template)


@pytest.mark.parametrize("photo", ["astronaut", "grace_hopper", "obama3"])
def test_real_photos_land_on_each_template(photo):
    """Align with each preset, detect the landmarks again on the output: they sit where the alignment's map
    put the photo's landmarks (< 3 px) and on the preset's template (celeba eyes and mouth within 4 px;
    arcface's five points, which a similarity cannot all fit, within 8 px, the eyes within 5 px)."""
    need_dlib()
    from data.dlib_faces import detect

    img = {"astronaut": astronaut, "grace_hopper": grace_hopper, "obama3": lambda: sdist_photo("obama3")}[photo]()
    face = detect(img)[0]
    for preset in PRESETS:
        out, A = align(Image.fromarray(img), face.landmarks, preset)
        again = detect(out, min_side=10 ** 6, threshold=0.0)  # one face, tightly cropped: upsample, any score
        assert len(again) >= 1, preset
        found = key_points(preset, again[0].landmarks)
        err_map = np.linalg.norm(found - apply_affine(A, key_points(preset, face.landmarks)), axis=1)
        err_tpl = np.linalg.norm(found - template(preset, out.shape[1], face.landmarks), axis=1)
        assert err_map.max() < 3.0, (preset, err_map)
        assert err_tpl.max() < TOLERANCE[preset], (preset, err_tpl)
        if preset == "arcface":
            assert err_tpl[:2].max() < 5.0, err_tpl  # the eyes; a broad smile moves the mouth corners


def test_align_folder_reports_every_problem_and_goes_on(tmp_path, capsys):
    need_dlib()
    photos, out = tmp_path / "photos", tmp_path / "aligned"
    (photos / "trip").mkdir(parents=True)
    Image.fromarray(astronaut()).save(photos / "trip" / "astronaut.jpg")
    Image.fromarray(no_face()).save(photos / "coffee.jpg")
    Image.fromarray(side_by_side(grace_hopper(), astronaut())).save(photos / "two.png")
    (photos / "notes.txt").write_text("not a photo\n")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (photos / ".hidden.jpg").write_bytes(b"skipped")
    assert preprocess.main(["--align", "celeba", "--images", str(photos), "--out", str(out)]) == 1
    report = (out / "align_report.txt").read_text().splitlines()
    assert report[:-1] == ["broken.jpg: unreadable: cannot identify image file", "coffee.jpg: no face",
                           "notes.txt: unreadable: cannot identify image file", "two.png: 2 faces, kept the largest"]
    assert report[-1] == "5 files: 2 aligned (celeba, 178 px), 3 failed; 2 images written"
    assert "coffee.jpg: no face" in capsys.readouterr().out
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["trip/astronaut.png", "two.png"]
    with Image.open(out / "two.png") as im:
        assert im.size == (178, 218)
    # --all: every face; a folder of good photos exits 0
    good = tmp_path / "good"
    good.mkdir()
    Image.fromarray(side_by_side(grace_hopper(), astronaut())).save(good / "two.png")
    assert preprocess.main(["--align", "arcface", "--all", "--images", str(good), "--out", str(tmp_path / "o2"),
                            "--size", "64"]) == 0
    assert sorted(p.name for p in (tmp_path / "o2").glob("*.png")) == ["two_0.png", "two_1.png"]
    assert (tmp_path / "o2" / "align_report.txt").read_text().splitlines()[0] == "two.png: 2 faces, wrote all"


def test_missing_extras_is_one_line_naming_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib -> ImportError
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "photo.jpg").write_bytes(b"")
    assert preprocess.main(["--align", "ffhq", "--images", str(tmp_path / "p"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: face alignment needs the optional face extras")
    assert "pip install -r requirements-faces.txt" in err and not (tmp_path / "o").exists()


# -- folders of own photos: names, overwriting, bit depths, output folders ----------------------------------

def _align(photos, out, *extra) -> int:
    return preprocess.main(["--align", "celeba", "--images", str(photos), "--out", str(out), *extra])


def _report(out) -> list[str]:
    return (out / "align_report.txt").read_text().splitlines()


def test_output_names_are_decided_from_the_file_names():
    P = Path
    names, renamed, left_out = output_names([P("a.jpg"), P("a.png"), P("b.jpg"), P("trip/a.jpg"), P("x.jpg"),
                                             P("x_0.jpg")], all_faces=False)
    assert names == {P("a.jpg"): P("a_jpg"), P("a.png"): P("a_png"), P("b.jpg"): P("b"),
                     P("trip/a.jpg"): P("trip/a"), P("x.jpg"): P("x"), P("x_0.jpg"): P("x_0")}
    assert renamed == {P("a.jpg"): P("a.png"), P("a.png"): P("a.jpg")} and left_out == {}
    # --all: x.jpg's faces would be x_0.png, x_1.png, ...: x.jpg and x_0.jpg both keep their extension
    names, renamed, _ = output_names([P("x.jpg"), P("x_0.jpg"), P("x_01.png"), P("y_2.jpg")], all_faces=True)
    assert names == {P("x.jpg"): P("x_jpg"), P("x_0.jpg"): P("x_0_jpg"), P("x_01.png"): P("x_01_png"),
                     P("y_2.jpg"): P("y_2")}
    assert renamed[P("x.jpg")] in (P("x_0.jpg"), P("x_01.png")) and P("y_2.jpg") not in renamed
    # a new name that meets another photo's name renames that photo too
    names, _, _ = output_names([P("a.jpg"), P("a.png"), P("a_jpg.png")], all_faces=False)
    assert names == {P("a.jpg"): P("a_jpg"), P("a.png"): P("a_png"), P("a_jpg.png"): P("a_jpg_png")}
    # a file without an extension cannot be renamed this way: the first of the two keeps the name
    names, _, left_out = output_names([P("a"), P("a.jpg"), P("a.png"), P("a_jpg")], all_faces=False)
    assert names == {P("a"): P("a"), P("a.jpg"): P("a_jpg"), P("a.png"): P("a_png")}
    assert left_out == {P("a_jpg"): P("a.jpg")}


def test_no_output_replaces_another_and_the_report_counts_what_was_written(tmp_path, capsys):
    need_dlib()
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(side_by_side(grace_hopper(), astronaut())).save(photos / "x.jpg")  # two faces
    Image.fromarray(astronaut()).save(photos / "x_0.jpg")
    Image.fromarray(astronaut()).save(photos / "a.jpg")
    Image.fromarray(grace_hopper()).save(photos / "a.png")
    out = photos / "aligned"  # a sub-folder of --images: left out of the photos
    assert _align(photos, out, "--all") == 0
    written = ["a_jpg.png", "a_png.png", "x_0_jpg.png", "x_jpg_0.png", "x_jpg_1.png"]
    assert sorted(p.name for p in out.glob("*.png")) == written
    assert _report(out) == ["a.jpg: written as a_jpg.png (name shared with a.png)",
                            "a.png: written as a_png.png (name shared with a.jpg)",
                            "x.jpg: 2 faces, wrote all",
                            "x.jpg: written as x_jpg_0.png, x_jpg_1.png (name shared with x_0.jpg)",
                            "x_0.jpg: written as x_0_jpg.png (name shared with x.jpg)",
                            "4 files: 4 aligned (celeba, 178 px), 0 failed; 5 images written"]
    got = {p.name: np.asarray(Image.open(p)) for p in out.glob("*.png")}
    assert np.array_equal(got["a_jpg.png"], got["x_0_jpg.png"])  # the same photo: each name is its own photo's
    assert not np.array_equal(got["a_jpg.png"], got["a_png.png"])
    # a second run refuses before writing anything; --force replaces the files of the first
    before = files_in(out)
    capsys.readouterr()
    assert _align(photos, out, "--all") == 2
    err = one_error(capsys)
    assert f"--out {out} already holds 6 files this run would write (align_report.txt, a_jpg.png" in err
    assert "add --force" in err and files_in(out) == before
    assert _align(photos, out, "--all", "--force") == 0
    after = files_in(out)
    assert sorted(after) == sorted(before) and all(after[k][1] >= before[k][1] for k in after)
    assert _report(out)[-1] == "4 files: 4 aligned (celeba, 178 px), 0 failed; 5 images written"


def test_a_taken_name_met_while_writing_is_reported_not_replaced(tmp_path, monkeypatch):
    """The check before the run misses a file (it appeared later; a case-insensitive file system): the photo
    is reported as not written and the file stays; even with --force no output replaces another of the run."""
    need_dlib()
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    out.mkdir()
    Image.fromarray(astronaut()).save(photos / "a.jpg")
    Image.fromarray(grace_hopper()).save(photos / "b.jpg")
    (out / "a.png").write_bytes(b"not ours")
    monkeypatch.setattr(data.align_folder, "_existing", lambda *args: [])
    assert _align(photos, out) == 1
    assert (out / "a.png").read_bytes() == b"not ours" and (out / "b.png").is_file()
    assert _report(out) == ["a.jpg: not written: a.png exists",
                            "2 files: 1 aligned (celeba, 178 px), 1 failed; 1 image written"]
    one_name = lambda rels, all_faces: ({r: Path("same") for r in rels}, {}, {})  # noqa: E731
    monkeypatch.setattr(data.align_folder, "output_names", one_name)
    assert _align(photos, tmp_path / "out2", "--force") == 1
    assert _report(tmp_path / "out2") == ["b.jpg: not written: same.png is another output of this run",
                                          "2 files: 1 aligned (celeba, 178 px), 1 failed; 1 image written"]
    with Image.open(tmp_path / "out2" / "same.png") as im, Image.open(out / "b.png") as grace:
        assert not np.array_equal(np.asarray(im), np.asarray(grace))  # a.jpg's face, not b.jpg's


def _png_rgb16(path, a: np.ndarray) -> None:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one): ``a`` uint16 H x W x 3."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w, _ = a.shape
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in a)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_high_bit_depth_photos_are_scaled_to_8_bits(tmp_path):
    """16-bit greyscale / RGB PNGs, a planar 16-bit RGB TIFF and 32-bit float TIFFs (grey and RGB) of a real
    photo align exactly as the 8-bit photo they were made from (a plain RGB conversion clips 16-bit and float
    greyscale to black and white: no face)."""
    need_dlib()
    tifffile = pytest.importorskip("tifffile", reason=EXTRAS + ": tifffile (installed with scikit-image)")
    rgb = astronaut()
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    Image.fromarray(rgb).save(photos / "rgb8.png")
    Image.fromarray(grey).save(photos / "grey8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(photos / "grey16.png")
    Image.fromarray(grey.astype(np.float32) / 255).save(photos / "grey_float.tif")
    _png_rgb16(photos / "rgb16.png", rgb.astype(np.uint16) * 257)
    tifffile.imwrite(photos / "rgb16_planar.tif", np.moveaxis(rgb.astype(np.uint16) * 257, 2, 0),
                     photometric="rgb", planarconfig="separate")
    tifffile.imwrite(photos / "rgb_float.tif", rgb.astype(np.float32) / 255, photometric="rgb")
    with Image.open(photos / "grey16.png") as a, Image.open(photos / "grey_float.tif") as b:
        assert (a.mode, b.mode) == ("I;16", "F")
        assert np.asarray(a.convert("RGB")).max() == 255 and np.asarray(b.convert("RGB")).max() == 1  # clipped
    assert (photos / "rgb16.png").read_bytes()[24] == 16  # IHDR bit depth
    with Image.open(photos / "rgb16_planar.tif") as im:  # Pillow misreads it (8-bit bands): tifffile reads it
        assert not np.array_equal(np.asarray(im), rgb)
    with pytest.raises(UnidentifiedImageError):  # Pillow cannot read it: tifffile does
        Image.open(photos / "rgb_float.tif")
    assert _align(photos, out) == 0
    assert _report(out) == ["7 files: 7 aligned (celeba, 178 px), 0 failed; 7 images written"]
    got = {p.stem: np.asarray(Image.open(p)) for p in out.glob("*.png")}
    for name in ("grey16", "grey_float"):
        assert np.array_equal(got[name], got["grey8"]), name
    for name in ("rgb16", "rgb16_planar", "rgb_float"):
        assert np.array_equal(got[name], got["rgb8"]), name


def test_to_uint8_scales_each_pixel_type():
    assert to_uint8(np.array([0, 255, 256, 65535], np.uint16)).tolist() == [0, 0, 1, 255]  # the high byte
    assert to_uint8(np.array([0, 0.5, 1, np.nan, -1], np.float32)).tolist() == [0, 128, 255, 0, 0]
    assert to_uint8(np.array([0, 255, 510], np.float32)).tolist() == [0, 128, 255]  # over 1: divided by the max
    assert to_uint8(np.array([3, 200], np.int32)).tolist() == [3, 200]  # 32-bit ints: 8 bits by their range,
    assert to_uint8(np.array([3, 4000], np.int32)).tolist() == [0, 15]  # 16
    assert to_uint8(np.array([-5, 2 ** 31 - 1], np.int32)).tolist() == [0, 127]  # or 32


def test_tiff_orientation_is_applied(tmp_path):
    tifffile = pytest.importorskip("tifffile", reason=EXTRAS + ": tifffile (installed with scikit-image)")
    a = np.zeros((10, 20, 3), np.float32)
    a[0, 0] = 1.0  # the top-left pixel; Orientation 6: the photo is shown turned 90 degrees clockwise
    tifffile.imwrite(tmp_path / "turned.tif", a, photometric="rgb", extratags=[(274, 3, 1, 6, True)])
    got = data.align_folder._read(tmp_path / "turned.tif")
    assert got.shape == (20, 10, 3) and np.argwhere(got[..., 0] == 255).tolist() == [[0, 9]]


def test_out_must_be_another_folder_than_the_photos(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(b"a photo")
    assert _align(photos, photos) == 2
    assert one_error(capsys) == (f"error: --out {photos} is the --images folder: the aligned faces would be "
                                 f"written among the photos; give another folder, e.g. --out {photos / 'aligned'}")
    assert _align(photos, tmp_path) == 2
    assert f"--images {photos} is inside --out {tmp_path}" in one_error(capsys)
    assert _align(photos, photos / "a.jpg") == 2
    assert f"--out {photos / 'a.jpg'} is a file, not a folder" in one_error(capsys)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.jpg", "photos"]


def test_an_output_folder_that_cannot_be_written_is_named(tmp_path, monkeypatch, capsys):
    need_dlib()
    photos = tmp_path / "photos"
    (photos / "trip").mkdir(parents=True)
    Image.fromarray(astronaut()).save(photos / "trip" / "a.jpg")
    if Path("/sys/kernel").is_dir():  # Linux: /sys refuses new files, even to root
        assert _align(photos, "/sys") == 2
        assert one_error(capsys).startswith("error: cannot write into the output folder /sys: ")
    (tmp_path / "a_file").write_text("")
    assert _align(photos, tmp_path / "a_file" / "out") == 2
    assert one_error(capsys) == f"error: cannot create the output folder {tmp_path / 'a_file' / 'out'}: Not a directory"
    # a read-only sub-folder of --out, met while writing (root may write anywhere: the OS's refusal is simulated)
    out = tmp_path / "out"
    (out / "trip").mkdir(parents=True)
    mkstemp = tempfile.mkstemp

    def refuse(*args, dir=None, **kw):
        if Path(dir) == out / "trip":
            raise PermissionError(13, "Permission denied", os.path.join(dir, ".tmpx.tmp"))
        return mkstemp(*args, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    assert _align(photos, out) == 2
    assert one_error(capsys) == f"error: cannot write into the output folder {out / 'trip'}: Permission denied"
    assert not list((out / "trip").iterdir())


class _StopAfterAlignment:
    """A stand-in for a trained method: infer.py aligns, then stops here."""
    tasks = ("content_transfer",)

    def inference(self, use_ema):
        raise RunError("stopped after the alignment")


def test_infer_align_keeps_earlier_aligned_photos_unless_force(tmp_path, monkeypatch, capsys):
    import infer
    import models

    photos, out = tmp_path / "photos", tmp_path / "removed"
    photos.mkdir()
    Image.fromarray(astronaut()).save(photos / "a.jpg")
    cfg = SimpleNamespace(eval=SimpleNamespace(use_ema=False))
    monkeypatch.setattr(models, "load_method", lambda checkpoint, overrides: (_StopAfterAlignment(), cfg, None))
    argv = ["remove", "--checkpoint", "run.pt", "--images", str(photos), "--out", str(out), "--align", "celeba"]
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "dlib", None)
        assert infer.main(argv) == 2
        assert one_error(capsys).startswith("error: face alignment needs the optional face extras")
    need_dlib()
    assert infer.main(argv) == 1 and "stopped after the alignment" in one_error(capsys)
    aligned = out / "aligned" / "images"
    before = files_in(aligned)
    assert sorted(before) == ["a.png", "align_report.txt"]
    assert infer.main(argv) == 2
    assert f"--out {aligned} already holds 2 files" in one_error(capsys) and files_in(aligned) == before
    assert infer.main(argv + ["--force"]) == 1
