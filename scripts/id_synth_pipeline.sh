#!/usr/bin/env bash
# Method 3 on the synthetic faces, end to end on CPU: the "pretrained" networks, the W dataset, the mapper,
# its evaluation. Each step skips work already done (resume), so the script can be re-run after a stop.
# Extra arguments are passed to the mapper's training, e.g. train.steps=500.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
for cfg in face_nets_synth face_judge_synth stylegan2_synth; do  # the judge first: stylegan2's evaluation uses it
  $PY train.py --config configs/$cfg.yaml --resume auto
done
if [ ! -f cache/w_synth/meta.json ]; then
  $PY scripts/generate_w_dataset.py --generator runs/stylegan2_synth/checkpoint-latest.pt \
      --out cache/w_synth --count 6000 --truncation 0.7 --force
fi
$PY train.py --config configs/id_synth.yaml --resume auto "$@"
$PY eval.py --checkpoint runs/id_synth/checkpoint-latest.pt
