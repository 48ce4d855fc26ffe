#!/usr/bin/env bash
# Train several runs at once on the GPU machine from the pack that pack.py made (issue #28), and bring back small checkpoints.
#
#   bash experiments/gpu/run.sh [--time SECONDS] [--device cuda|cpu] [--set KEY=VALUE …] CONFIG[:KEY=VALUE[,KEY=VALUE…]] …
#   e.g. (device tool, carry ["out/gpu_pack"]):  bash experiments/gpu/run.sh faceres_long.yaml:seed=0 faceres_long.yaml:seed=1
#
# CONFIG is a path, or a name in experiments/configs/ or configs/. Each run is named after it and its overrides
# (faceres_long-seed0). --set applies to every run, before the run's own overrides. --time (default 480 s) stops training
# that is still going, so that the whole command ends inside the device tool's 10 minutes; a stopped run ships the
# last epoch it finished. What comes back in $OUT: NAME.pt per run (float16, EMA weights), summary.json, logs.tgz
# (stdout, history.csv and TensorBoard events of every run): so at most 6 runs, as the tool returns 8 files.
#
# Environment: OUT (required), PYTHON (default python3: on the GPU machine the one with PyTorch), PACK (default
# out/gpu_pack), WORK (scratch; default a new temporary folder, removed at the end unless KEEP_WORK=1).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1                       # the repository root: fer_nb is imported from here
die() { echo "run.sh: error: $*" >&2; exit 1; }

TIME=480 DEVICE=cuda SETS=() SPECS=()
while (($#)); do
  case $1 in
    --time) TIME=${2:?}; shift 2 ;;
    --device) DEVICE=${2:?}; shift 2 ;;
    --set) SETS+=(--set "${2:?}"); shift 2 ;;
    -*) die "unknown option $1 (see the top of $0)" ;;
    *) SPECS+=("$1"); shift ;;
  esac
done
[[ -n ${OUT:-} ]] || die "OUT is not set (the folder the device tool brings back)"
((${#SPECS[@]} >= 1 && ${#SPECS[@]} <= 6)) || die "give 1 to 6 runs (the tool brings back 8 files: one per run, summary.json, logs.tgz)"
PY=${PYTHON:-python3} PACK=${PACK:-out/gpu_pack}
if [[ -z ${WORK:-} ]]; then
  WORK=$(mktemp -d); [[ ${KEEP_WORK:-0} == 1 ]] || trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$OUT" "$WORK/logs"
# the GPU machine has no .venv and cannot install: its python3 has torch, numpy, pandas, Pillow, PyYAML, tensorboard,
# but not fastcore, which `fer-nb`'s serve and predict commands import; so the CLI is started with the train command alone
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 FER_NB_CACHE=$WORK/cache
LAUNCH='import sys; from fer_nb import cli; cli.CLI_MODULES = ("train",); sys.exit(cli.main())'

if [[ $DEVICE == cuda* ]]; then nvidia-smi -L 2>/dev/null; fi
"$PY" -c 'import torch, sys; print(f"python {sys.version.split()[0]}, torch {torch.__version__}, cuda {torch.cuda.is_available()}")' || die "$PY has no torch"

# 1. FERPlus and the backbone, pixel-exact, into the scratch folder (this also fills the loader's cache once for all runs)
"$PY" experiments/gpu/unpack.py --pack "$PACK" --ferplus "$WORK/ferplus" --backbones "$WORK/backbones" || exit 1
export FERPLUS_DIR=$WORK/ferplus FER_NB_BACKBONES=$WORK/backbones

# 2. every run at once, in the background: one GPU is far from full with one of these small models
THREADS=$(( $(nproc) / ${#SPECS[@]} )); ((THREADS >= 1)) || THREADS=1
NAMES=() PIDS=()
for spec in "${SPECS[@]}"; do
  config=${spec%%:*} overrides=(); [[ $spec == *:* ]] && IFS=, read -ra overrides <<< "${spec#*:}"
  for c in "$config" "experiments/configs/$config" "configs/$config"; do [[ -f $c ]] && { config=$c; break; }; done
  [[ -f $config ]] || die "config not found: ${spec%%:*} (a path, or a name in experiments/configs/ or configs/)"
  name=$(basename "$config" .yaml); for o in "${overrides[@]}"; do name+="-${o/=/}"; done
  name=${name//[^A-Za-z0-9._-]/_}                              # names the tool brings back: letters, digits, . _ -
  sets=(); for o in "${overrides[@]}"; do sets+=(--set "$o"); done
  mkdir -p "$WORK/logs/$name"
  timeout -k 30 "$TIME" "$PY" -c "$LAUNCH" train --config "$config" --set run="$name" --set out_dir="$WORK/checkpoints" \
    --set log_dir="$WORK/logs" --set progress=none --set device="$DEVICE" --set threads="$THREADS" "${SETS[@]}" "${sets[@]}" \
    > "$WORK/logs/$name/stdout.log" 2>&1 &
  NAMES+=("$name") PIDS+=($!)
  echo "started $name ($config${overrides:+ with ${overrides[*]}}), pid $!"
done

# 3. wait for all, then ship: float16 EMA weights per run, the summary, the logs
ENDED=()
for i in "${!PIDS[@]}"; do
  wait "${PIDS[$i]}"; code=$?
  ENDED+=("${NAMES[$i]}=$code")
  echo "--- ${NAMES[$i]} (exit $code), last lines:"; tail -n 4 "$WORK/logs/${NAMES[$i]}/stdout.log"
done
"$PY" experiments/gpu/ship.py --work "$WORK" --out "$OUT" "${ENDED[@]}"; status=$?
tar -czf "$OUT/logs.tgz" -C "$WORK" logs
ls -l "$OUT"
exit $status
