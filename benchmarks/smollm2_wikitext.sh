#!/usr/bin/env bash
# SmolLM2-135M perplexity on WikiText-2 test before and after fine-tuning on WikiText-2 valid,
# with full fine-tuning and with LoRA (the shipped recipes, data from ../shared/data).
# Prints each command's wall time and peak RSS (GNU time) and writes runs under $OUT.
# TRAIN_LINES / EVAL_LINES take the first N lines of each file (the whole files take about
# 25 min of training and 10 min per evaluation on 2 CPU cores).
#   TRAIN_LINES=300 EVAL_LINES=300 bash benchmarks/smollm2_wikitext.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/smollm2-wikitext}
WIKI=$(cd ../shared/data/wikitext2_raw && pwd)
DATA=("data.train_path=$WIKI/wiki.valid.raw" "data.eval_path=$WIKI/wiki.test.raw")
if [ -n "${TRAIN_LINES:-}" ]; then DATA+=("data.max_train_examples=$TRAIN_LINES"); else DATA+=("~data.max_train_examples"); fi
if [ -n "${EVAL_LINES:-}" ]; then DATA+=("data.max_eval_examples=$EVAL_LINES"); fi
export HF_HUB_OFFLINE=1
NLP=.venv/bin/nlptasks
MODEL=$(.venv/bin/python -c "from nlptasks.models import resolve_model; print(resolve_model('smollm2-135m'))")
mkdir -p "$OUT"
timed() { /usr/bin/time -f "$1: wall %e s, peak RSS %M KB" "${@:2}"; }
timed "before" $NLP eval generation --model "$MODEL" --recipe smollm2 "${DATA[@]}" --json | tee "$OUT/before.json"
timed "full" $NLP run generation --recipe smollm2 "${DATA[@]}" --output-dir "$OUT/full" --quiet
timed "lora" $NLP run generation --recipe smollm2-lora "${DATA[@]}" --output-dir "$OUT/lora" --quiet
for run in full lora; do
  .venv/bin/python - "$OUT/$run" <<'PY'
import json, sys, yaml
run = sys.argv[1]
r = json.load(open(f"{run}/results.json"))
block = yaml.safe_load(open(f"{run}/recipe.yaml"))["options"]["block_size"]
t = r["train"]
print(run, "perplexity", round(r["metrics"]["eval"]["perplexity"], 3),
      "| train s", t["train_seconds"], "(eval s", t["eval_seconds"], ")",
      "| tokens/s", round(t["examples_per_second"] * block, 1),
      "| trainable", t.get("trainable_parameters"), "of", t.get("parameters"))
PY
done
