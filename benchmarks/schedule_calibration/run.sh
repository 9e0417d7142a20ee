#!/usr/bin/env bash
# Schedule calibration: each family's val-best (and focal's paper default) under a variant
# config, seeds 0 and 1, val every 1/8 of the schedule, two 1-thread trainings side by side
# (as the queue runs them). Needs data/synth (dvc repro prepare).
#   bash benchmarks/schedule_calibration/run.sh step w24_step cos1200
# Writes benchmarks/schedule_calibration/runs/<variant>/<setting>/seed<k>/ (metrics.json and
# config.py are kept in git; checkpoints go to work_dirs/schedule_calibration/).
set -euo pipefail
cd "$(dirname "$0")/../.."
here=benchmarks/schedule_calibration
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
jobs=()
for v in "$@"; do
  [ -f "$here/configs/$v.py" ] || { echo "$here/configs/$v.py: no such variant" >&2; exit 2; }
  for s in 0 1; do
    jobs+=("$v focal --gamma 0.0 --alpha 0.75 $s best_focal")
    jobs+=("$v ohem --neg-pos-ratio all $s best_ohem")
    jobs+=("$v sse --lambda-noobj 0.1 $s best_sse")
    [ "$v" = cos1200 ] || jobs+=("$v focal --gamma 2.0 --alpha 0.25 $s default_focal")
  done
done
printf '%s\n' "${jobs[@]}" | xargs -P 2 -I{} bash -c '
set -- {}; v=$1; fam=$2; name=${@: -1}; seed=${@: -2:1}; knobs="${@:3:$(($#-4))}"
out='"$here"'/runs/$v/$name/seed$seed
[ -f "$out/metrics.json" ] && exit 0
python -m lossbench train --config '"$here"'/configs/$v.py --family $fam $knobs --seed $seed \
  --data-root data/synth/raw --ann-dir data/synth/prepared --val-every 0.125 \
  --out "$out" --work-dir work_dirs/schedule_calibration/$v/$name/seed$seed > /dev/null
echo "$(date +%T) $v $name seed$seed done"'
python "$here/summarize.py"
