"""Convert a checkpoint of the original mask-based code (rmokady/mbu-content-tansfer) into one of ours.

    python scripts/convert_mbu_checkpoint.py checkpoint_glasses runs/mbu_glasses/checkpoint-latest.pt
    python eval.py --checkpoint runs/mbu_glasses/checkpoint-latest.pt data.root=data/glasses

Key names are detected, not flagged: the released checkpoints use 'decoder' / 'mustacher' for D_A / D_B
(the original's ``--old_model`` flag parsed any value, even "False", as True); self-trained ones 'd_a' /
'd_b'. Weights only: the discriminator (absent from the released files) and optimizers start fresh, so
continue training with ``train.py --init``. The config (default: the Eyewear preset at 128 px, sep 25)
must match the checkpoint's size and sep.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from core.cli import clear_errors  # noqa: E402

# our net -> (its key in the original's file, new-style name first; prefix of its nn.Sequential there)
SOURCES = {"e1": (("e1",), "full."), "e2": (("e2",), "full."), "d_a": (("d_a", "decoder"), "main."),
           "d_b": (("d_b", "mustacher"), "main."), "disc": (("disc",), "classify.")}
OUR_PREFIX = {"e1": "", "e2": "", "d_a": "net.", "d_b": "net.", "disc": ""}


def convert_state(state: dict) -> tuple[dict, int]:
    """The original's checkpoint dict -> ({net: our state dict}, iterations); nets it lacks are left out."""
    nets = {}
    for net, (keys, prefix) in SOURCES.items():
        key = next((k for k in keys if k in state), None)
        if key is None:
            if net == "disc":
                continue
            raise ValueError(f"checkpoint has none of {keys}; keys: {sorted(state)}")
        nets[net] = {re.sub(f"^{re.escape(prefix)}", OUR_PREFIX[net], k): v for k, v in state[key].items()}
    return nets, int(state.get("iters", 0))


@clear_errors
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="the original's checkpoint file (torch.save of a dict)")
    p.add_argument("dest", help="our checkpoint file to write")
    p.add_argument("--config", default=str(Path(__file__).resolve().parent.parent / "configs" / "mask_celeba_glasses.yaml"))
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_intermixed_args(argv)

    import torch

    from core import checkpoint as ckpt
    from core.config import load_config
    from core.torch_files import torch_load
    from models import build_method

    cfg = load_config(args.config, args.overrides)
    cfg.run.name = cfg.run.name or Path(args.dest).parent.name
    if cfg.method != "mask_ct":
        p.error(f"--config must be a mask_ct config, got method {cfg.method!r}")
    if not Path(args.source).is_file():
        raise FileNotFoundError(f"checkpoint not found: {args.source}")
    state = torch_load(args.source, "a checkpoint of the original mask-based code (torch.save of a dict)",
                       weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{args.source} holds a {type(state).__name__}, not the original's checkpoint dict")
    nets, iters = convert_state(state)
    method = build_method(cfg, torch.device("cpu"))
    for name, sd in nets.items():
        try:  # BatchNorm fills num_batches_tracked for PyTorch 0.4.0 files
            method.nets[name].load_state_dict(sd)
        except RuntimeError as e:
            raise ValueError(f"{args.source}: {name} does not fit the networks of {args.config} "
                             f"({' '.join(ln.strip() for ln in str(e).splitlines()[:2])} ...); pass the config it was "
                             "trained with") from None
    payload = {"format": ckpt.FORMAT, "method": cfg.method, "config": cfg.to_dict(), "step": iters,
               "images": iters * 2 * cfg.data.batch_size, "world_size": 1, "rng": [ckpt.rng_state()],
               "scalers": {}, "meta": {"converted_from": str(args.source)}, **method.training_state()}
    ckpt.save_atomic(payload, args.dest)
    print(f"wrote {args.dest} ({', '.join(nets)} from {args.source}, {iters} iterations)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
