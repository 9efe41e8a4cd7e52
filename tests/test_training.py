"""The shared loop: bit-exact resume, weights-only init, DDP on CPU (gloo), run-folder contents."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train
from core import checkpoint as ckpt

ROOT = Path(__file__).resolve().parent.parent
TINY = ["data.size=32", "data.train_length=48", "data.test_length=8", "data.batch_size=4",
        "model.width=0.25", "model.sep=8", "train.log_every=2", "train.image_every=4", "train.grid_size=2"]


def run_train(tmp_path, name, *extra):
    argv = ["--config", str(ROOT / "configs/synth_glasses.yaml"), f"run.dir={tmp_path}", f"run.name={name}",
            "data.cache_dir=" + str(tmp_path / "cache"), *TINY, *extra]
    assert train.main(argv) == 0
    return tmp_path / name


def tensors(state):
    out = {}
    for section in ("nets", "ema"):
        for k, v in (state[section] or {}).items():
            out[f"{section}.{k}"] = v
    for name, opt in state["optims"].items():
        for pid, st in opt["state"].items():
            for k, v in st.items():
                out[f"opt.{name}.{pid}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return out


def test_resume_is_bit_exact(tmp_path):
    straight = ckpt.load(run_train(tmp_path, "straight", "train.steps=6", "train.ema_kimg=0.01") / ckpt.LATEST)
    run_train(tmp_path, "split", "train.steps=3", "train.ema_kimg=0.01")
    # a finished run copied elsewhere and continued to more steps (scripts/reference_runs.sh long_*) is the same run
    shutil.copytree(tmp_path / "split", tmp_path / "extended" / "split")
    resumed = ckpt.load(run_train(tmp_path, "split", "train.steps=6", "train.ema_kimg=0.01", "--resume", "auto")
                        / ckpt.LATEST)
    extended = ckpt.load(run_train(tmp_path / "extended", "split", "train.steps=6", "train.ema_kimg=0.01",
                                   "--resume", "auto", f"data.cache_dir={tmp_path / 'cache'}") / ckpt.LATEST)
    c = tensors(extended)
    assert extended["step"] == 6 and c.keys() == tensors(straight).keys()
    assert all(torch.equal(c[k], v) for k, v in tensors(straight).items())
    assert resumed["step"] == straight["step"] == 6 and resumed["images"] == straight["images"] == 6 * 8
    a, b = tensors(straight), tensors(resumed)
    assert a.keys() == b.keys() and any(k.startswith("ema.") for k in a)
    diff = [k for k in a if not torch.equal(a[k], b[k])]
    assert not diff, f"resumed run differs in {diff[:5]}"
    # the global RNG continues where the straight run was (building the data streams draws from it)
    assert torch.equal(straight["rng"][0]["torch"], resumed["rng"][0]["torch"])
    assert not (tmp_path / "split" / "checkpoint-0000003.pt").exists()  # no snapshots unless asked for
    stats = [json.loads(line) for line in (tmp_path / "split" / "stats.jsonl").read_text().splitlines()]
    assert [s["step"] for s in stats] == [2, 3, 4, 6]


def test_existing_run_needs_resume_or_force(tmp_path, capsys):
    run_train(tmp_path, "r", "train.steps=2")
    argv = ["--config", str(ROOT / "configs/synth_glasses.yaml"), f"run.dir={tmp_path}", "run.name=r", *TINY,
            "train.steps=2"]
    assert train.main(argv) == 1
    assert "--resume auto" in capsys.readouterr().err
    run_train(tmp_path, "r", "train.steps=2", "--force")
    assert [json.loads(ln)["step"] for ln in (tmp_path / "r" / "stats.jsonl").read_text().splitlines()] == [2]


def test_init_loads_weights_but_restarts_counters(tmp_path):
    src = run_train(tmp_path, "src", "train.steps=2")
    dst = run_train(tmp_path, "dst", "train.steps=1", "--init", str(src / ckpt.LATEST))
    state = ckpt.load(dst / ckpt.LATEST)
    assert state["step"] == 1
    grids = sorted(p.name for p in (dst / "grids").iterdir())
    assert grids and all(name.endswith(".png") for name in grids)
    assert (dst / "config.yaml").is_file() and list((dst / "tensorboard").iterdir())


def test_snapshots_and_run_files(tmp_path):
    run = run_train(tmp_path, "snap", "train.steps=4", "train.snapshot_every=2")
    assert (run / "checkpoint-0000002.pt").is_file() and (run / "checkpoint-0000004.pt").is_file()
    assert not list(run.glob("*.tmp"))
    # resuming from the earlier snapshot re-logs steps 3-4 once, not twice
    run_train(tmp_path, "snap", "train.steps=4", "--resume", str(run / "checkpoint-0000002.pt"))
    assert [json.loads(ln)["step"] for ln in (run / "stats.jsonl").read_text().splitlines()] == [2, 4]


@pytest.mark.slow
def test_ddp_two_processes_match_one_process_with_double_batch(tmp_path):
    common = [str(ROOT / "train.py"), "--config", str(ROOT / "configs/synth_glasses.yaml"), f"run.dir={tmp_path}",
              f"data.cache_dir={tmp_path / 'cache'}", *TINY, "train.steps=3", "device=cpu", "model.norm=none",
              "cpu_amp=none"]  # fp32: the two runs differ by summation order only
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          *common, "run.name=ddp"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one = subprocess.run([sys.executable, *common, "run.name=one", "data.batch_size=8"], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    a = ckpt.load(tmp_path / "ddp" / ckpt.LATEST)
    b = ckpt.load(tmp_path / "one" / ckpt.LATEST)
    assert a["world_size"] == 2 and len(a["rng"]) == 2 and a["images"] == b["images"] == 3 * 16
    for k in a["nets"]:
        if a["nets"][k].dtype.is_floating_point:
            torch.testing.assert_close(a["nets"][k], b["nets"][k], rtol=1e-4, atol=1e-5)


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path, monkeypatch, capsys):
    from models.content_ae import ContentAE

    real_step = ContentAE.train_step

    def step(self, batch, step, ctx):
        logs = real_step(self, batch, step, ctx)
        return {**logs, "loss/ae": float("nan")} if step == 3 else logs

    monkeypatch.setattr(ContentAE, "train_step", step)
    argv = ["--config", str(ROOT / "configs/synth_glasses.yaml"), f"run.dir={tmp_path}", "run.name=nan", *TINY,
            "train.steps=6", "train.ckpt_every=2", f"data.cache_dir={tmp_path / 'cache'}"]
    assert train.main(argv) == 1
    err = capsys.readouterr().err
    assert "non-finite loss/ae at step 3" in err and "checkpoint-latest.pt" in err
    assert ckpt.load(tmp_path / "nan" / ckpt.LATEST)["step"] == 2


def test_sigint_exits_130_with_a_resume_hint_and_a_failed_first_attempt_leaves_no_folder(tmp_path, monkeypatch,
                                                                                         capsys):
    import signal

    from models.content_ae import ContentAE

    real_step = ContentAE.train_step

    def step(self, batch, step, ctx):
        if step == 1:
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C would, during step 1
        return real_step(self, batch, step, ctx)

    monkeypatch.setattr(ContentAE, "train_step", step)
    argv = ["--config", str(ROOT / "configs/synth_glasses.yaml"), f"run.dir={tmp_path}", "run.name=int", *TINY,
            "train.steps=6", f"data.cache_dir={tmp_path / 'cache'}"]
    assert train.main(argv) == 130
    err = capsys.readouterr().err
    assert "error: stopped by SIGINT at step 2 of 6" in err and "--resume auto" in err
    assert ckpt.load(tmp_path / "int" / ckpt.LATEST)["step"] == 2

    def broken(self, batch, step, ctx):
        raise ValueError("a bad value in the first step")

    monkeypatch.setattr(ContentAE, "train_step", broken)
    assert train.main([*argv, "run.name=fails"]) == 1
    assert "error: a bad value in the first step" in capsys.readouterr().err
    assert not (tmp_path / "fails").exists()  # no checkpoint was saved: nothing left that looks like a run
    (tmp_path / "fails").mkdir()
    (tmp_path / "fails" / "notes.txt").write_text("mine")
    assert train.main([*argv, "run.name=fails"]) == 1
    assert sorted(p.name for p in (tmp_path / "fails").iterdir()) == ["config.yaml", "grids", "meta.json", "notes.txt",
                                                                     "stats.jsonl", "tensorboard"]  # not ours to remove


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_resume_continues(tmp_path):
    import signal
    import time

    cmd = [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs/synth_glasses.yaml"),
           f"run.dir={tmp_path}", "run.name=term", f"data.cache_dir={tmp_path / 'cache'}", *TINY,
           "train.steps=100000", "train.ckpt_every=100000", "train.image_every=100000"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stats = tmp_path / "term" / "stats.jsonl"
    deadline = time.time() + 300
    while not (stats.is_file() and stats.read_text().count("\n") >= 2):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]  # `train.py ... && eval.py ...` stops here
    state = ckpt.load(tmp_path / "term" / ckpt.LATEST)
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert 4 <= state["step"] < 100000 and len(errors) == 1 and "Traceback" not in err
    assert f"stopped by SIGTERM at step {state['step']} of 100000" in errors[0] and "--resume auto" in errors[0]
    step = state["step"]
    run_train(tmp_path, "term", f"train.steps={step + 2}", "--resume", "auto")
    assert ckpt.load(tmp_path / "term" / ckpt.LATEST)["step"] == step + 2


@pytest.mark.slow
def test_sigkill_mid_run_loses_nothing_before_the_last_checkpoint(tmp_path):
    """SIGKILL (no handler runs): resume from the last periodic checkpoint and finish; the result equals a
    run that was never interrupted, bit for bit."""
    import signal
    import time

    total = 60
    cmd = [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs/synth_glasses.yaml"),
           f"run.dir={tmp_path}", "run.name=kill", f"data.cache_dir={tmp_path / 'cache'}", *TINY,
           f"train.steps={total}", "train.ckpt_every=3", "train.image_every=100000", "train.ema_kimg=0.01"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    latest = tmp_path / "kill" / ckpt.LATEST
    deadline = time.time() + 300
    while not latest.is_file():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    step = ckpt.load(latest)["step"]  # whole even if the kill came mid-write: files are renamed into place
    assert step % 3 == 0 and 3 <= step < total, step
    resumed = ckpt.load(run_train(tmp_path, "kill", f"train.steps={total}", "train.ckpt_every=3",
                                  "train.ema_kimg=0.01", "--resume", "auto") / ckpt.LATEST)
    straight = ckpt.load(run_train(tmp_path, "straight", f"train.steps={total}", "train.ckpt_every=3",
                                   "train.ema_kimg=0.01") / ckpt.LATEST)
    a, b = tensors(straight), tensors(resumed)
    assert resumed["step"] == total and a.keys() == b.keys()
    assert not [k for k in a if not torch.equal(a[k], b[k])]


def test_step_context_precision_rules(monkeypatch):
    from core import step
    from core.step import StepContext

    for native in (False, True):
        monkeypatch.setattr(step, "cpu_has_native_bf16", lambda: native)
        assert StepContext(torch.device("cpu"), "bf16").amp == "none"  # amp is CUDA's; a CPU follows cpu_amp
        cpu = StepContext(torch.device("cpu"), "none", "bf16")
        want = torch.bfloat16 if native else torch.float32  # CPU bf16 autocast only where the CPU has bf16 units
        assert cpu.amp == ("bf16" if native else "none")
        with cpu.autocast():
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == want
        assert cpu.scale(torch.ones(()), "g") == 1  # no loss scaling for bf16
    assert StepContext(torch.device("cuda"), "fp16", "bf16").amp == "fp16"  # CUDA takes amp
    assert StepContext(torch.device("cuda"), "none", "bf16").amp == "none"
    with pytest.raises(ValueError, match="none|bf16|fp16"):
        StepContext(torch.device("cuda"), "fp8")
    with pytest.raises(ValueError, match="cpu_amp must be none|bf16"):
        StepContext(torch.device("cpu"), "none", "fp16")


def test_cpu_bf16_detection_reads_the_cpu_flags(monkeypatch, tmp_path):
    import builtins

    from core import step

    real_open = builtins.open
    for flags, want in (("fpu avx512f avx512_bf16 sse", True), ("fpu amx_bf16 avx2", True), ("fpu avx512f avx2", False)):
        info = tmp_path / "cpuinfo"
        info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        monkeypatch.setattr(builtins, "open", lambda p, *a, **k: real_open(info if p == "/proc/cpuinfo" else p, *a, **k))
        monkeypatch.setattr(step.sys, "platform", "linux")
        monkeypatch.setattr(step.torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
        step.cpu_has_native_bf16.cache_clear()
        assert step.cpu_has_native_bf16() is want
    monkeypatch.setattr(step.torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    step.cpu_has_native_bf16.cache_clear()
    assert step.cpu_has_native_bf16() is False  # oneDNN without bf16: never
    monkeypatch.undo()
    step.cpu_has_native_bf16.cache_clear()


def test_cuda_request_without_cuda_is_a_clear_error():
    from core.runtime import pick_device

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        pick_device("cuda")
    assert pick_device("auto").type == "cpu"


def test_channels_last_handles_5d_weights():
    """StyleGAN2 holds 5-d modulated-conv weights, which Module.to(memory_format=channels_last) refuses."""
    from core.runtime import to_channels_last

    from core.config import CONFIG_DIR, load_config
    from models import build_method

    cfg = load_config(CONFIG_DIR / "stylegan2_synth.yaml", ["device=cpu"])
    method = build_method(cfg, torch.device("cpu"))
    with pytest.raises(RuntimeError):
        method.to(memory_format=torch.channels_last)
    to_channels_last(method)
    four_d = [p for p in method.parameters() if p.dim() == 4]
    assert four_d and all(p.is_contiguous(memory_format=torch.channels_last) for p in four_d)
