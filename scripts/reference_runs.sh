#!/usr/bin/env bash
# Reference runs (docs/reference.md): each method trained at its reference budget on the synthetic world, its
# quality-vs-time curve against the reference goals, and both leaderboards. Every step resumes (--resume auto),
# so the script can be re-run after a stop; a finished step costs only its start-up.
#
#   scripts/reference_runs.sh                 # everything, in this order
#   scripts/reference_runs.sh judges mad      # some parts: judges content_ae mask_ct id_mapper g2g mad leaderboards
#   scripts/reference_runs.sh long_content_ae   # a finished reference run continued to 4x its steps in runs/extended
#                                             # (long_content_ae long_mask_ct long_id_mapper long_g2g long_mad; not in
#                                             # the default list: hours each, docs/reference.md)
#
# Budgets and wall times: docs/reference.md. Threads: OMP_NUM_THREADS (default 2, the CI machine's cores).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
REF=runs/reference
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(judges content_ae mask_ct id_mapper mad g2g leaderboards)

train() { $PY train.py --config "configs/$1.yaml" --resume auto "${@:2}"; }
curve() { $PY scripts/time_to_quality.py --run "$REF/$1"; }
chain() {  # a phase started from the previous phase's weights (--init), or resumed once it has a checkpoint
  if [ -f "$REF/$(basename "$1")/checkpoint-latest.pt" ]; then train "$1"; else
    $PY train.py --config "configs/$1.yaml" --init "$REF/$2/checkpoint-latest.pt"; fi
}

extend() {  # continue the finished reference run $1 in runs/extended/ to $2 steps (its rates are constant, so this
  local run=$1 steps=$2   # is the same run, longer; the reference run itself is left as it is), then its curve
  if [ ! -d "runs/extended/$run" ]; then
    [ -f "$REF/$run/checkpoint-latest.pt" ] || { echo "error: $REF/$run has no checkpoint: run its part first" >&2; exit 2; }
    mkdir -p runs/extended && cp -r "$REF/$run" "runs/extended/$run"
  fi
  $PY train.py --config "configs/reference/$run.yaml" --resume auto run.dir=runs/extended train.steps="$steps"
  $PY scripts/time_to_quality.py --run "runs/extended/$run"
}

for part in "${parts[@]}"; do
  case $part in
    judges)  # independent judges of the identity-swap board (and method 4's class encoder)
      train face_nets_synth
      train face_judge_synth ;;
    content_ae)
      train reference/synth_glasses
      curve synth_glasses ;;
    mask_ct)
      train reference/mask_synth_glasses
      curve mask_synth_glasses ;;
    id_mapper)  # method 3's pipeline: its generator (and how well it can draw the true swaps), W set, mapper
      train reference/stylegan2_synth
      $PY scripts/generator_ceiling.py --run $REF/stylegan2_synth
      if [ ! -f cache/w_synth_reference/meta.json ]; then
        $PY scripts/generate_w_dataset.py --generator $REF/stylegan2_synth/checkpoint-latest.pt \
            --out cache/w_synth_reference --count 6000 --truncation 0.7 --force
      fi
      train reference/id_synth
      curve id_synth ;;
    g2g)
      train reference/g2g_synth
      curve g2g_synth ;;
    mad)  # three phases chained with --init
      train reference/mad_synth_ae
      chain reference/mad_synth_disentangle mad_synth_ae
      chain reference/mad_synth_joint mad_synth_disentangle
      curve mad_synth_joint ;;
    long_content_ae) extend synth_glasses 48000 ;;
    long_mask_ct) extend mask_synth_glasses 32000 ;;
    long_id_mapper) extend id_synth 128000 ;;
    long_g2g) extend g2g_synth 28000 ;;
    long_mad) extend mad_synth_joint 24000 ;;  # its joint phase at 4x its steps
    leaderboards)
      $PY eval.py --leaderboard content_transfer --runs $REF/synth_glasses $REF/mask_synth_glasses --out $REF/leaderboards
      $PY eval.py --leaderboard identity_swap --runs $REF/id_synth $REF/g2g_synth $REF/mad_synth_joint --out $REF/leaderboards \
          --identity-judge runs/face_judge_synth/checkpoint-latest.pt \
          --analysis-judge runs/face_judge_synth/checkpoint-latest.pt ;;
    *) echo "error: unknown part '$part' (judges content_ae mask_ct id_mapper g2g mad leaderboards," \
            "long_content_ae long_mask_ct long_id_mapper long_g2g long_mad)" >&2; exit 2 ;;
  esac
done
