#!/usr/bin/env bash
# Schedule calibration: each family's val-best (and focal's paper default) under a variant,
# seeds 0 and 1, val every 1/8 of the schedule, two 1-thread trainings side by side (as
# `lossbench queue run` runs them). A variant is a config of configs/ (on the study's data,
# data/synth: `dvc repro prepare` first) or <config>@<data>, with <data> a variant of
# data.yaml (generated into work_dirs/schedule_calibration/data/ on first use):
#   bash benchmarks/schedule_calibration/run.sh step w24_step cos1200 lr4e-3 study@clean
# Writes benchmarks/schedule_calibration/runs/<variant>/<setting>/seed<k>/ (metrics.json and
# env.json are kept in git; checkpoints go to work_dirs/schedule_calibration/).
set -euo pipefail
cd "$(dirname "$0")/../.."
here=benchmarks/schedule_calibration
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
jobs=()
for v in "$@"; do
  cfg=${v%%@*}
  [ -f "$here/configs/$cfg.py" ] || { echo "$here/configs/$cfg.py: no such config" >&2; exit 2; }
  if [ "$v" != "$cfg" ]; then
    python "$here/make_data.py" "${v#*@}" work_dirs/schedule_calibration/data
  fi
  for s in 0 1; do
    jobs+=("$v focal --gamma 0.0 --alpha 0.75 $s best_focal")
    jobs+=("$v ohem --neg-pos-ratio all $s best_ohem")
    jobs+=("$v sse --lambda-noobj 0.1 $s best_sse")
    case $v in step|w24_step) jobs+=("$v focal --gamma 2.0 --alpha 0.25 $s default_focal");; esac
  done
done
printf '%s\n' "${jobs[@]}" | xargs -P 2 -I{} bash -c '
set -- {}; v=$1; fam=$2; name=${@: -1}; seed=${@: -2:1}; knobs="${@:3:$(($#-4))}"
cfg=${v%%@*}; data=data/synth
[ "$v" = "$cfg" ] || data=work_dirs/schedule_calibration/data/${v#*@}
out='"$here"'/runs/$v/$name/seed$seed
[ -f "$out/metrics.json" ] && exit 0
python -m lossbench train --config '"$here"'/configs/$cfg.py --family $fam $knobs --seed $seed \
  --data-root $data/raw --ann-dir $data/prepared --val-every 0.125 \
  --out "$out" --work-dir work_dirs/schedule_calibration/$v/$name/seed$seed > /dev/null
echo "$(date +%T) $v $name seed$seed done"'
python "$here/summarize.py"
