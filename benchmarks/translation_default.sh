#!/usr/bin/env bash
# An offline translation recipe before and after fine-tuning: BLEU and chrF (with their 95%
# bootstrap intervals) on the 511 held-out Bible verse pairs (six whole books; World English
# Bible -> Louis Segond 1910), the model as its preset gives it, then the recipe's run.
# Prints each command's wall time and peak RSS (GNU time), a few translations, and writes
# everything under OUT (the run directory is OUT/run; `nlptasks verify OUT/run` checks it).
#   bash benchmarks/translation_default.sh RECIPE [OUT]
#   bash benchmarks/translation_default.sh gemma3-270m /tmp/bench/gemma
#   bash benchmarks/translation_default.sh smollm2 /tmp/bench/smollm2
set -euo pipefail
cd "$(dirname "$0")/.."
RECIPE=${1:?name a translation recipe: gemma3-270m or smollm2}
OUT=${2:-runs/translation-$RECIPE}
export HF_HUB_OFFLINE=1
NLP=.venv/bin/nlptasks
PRESET=$(.venv/bin/python -c "from nlptasks.recipes import load_recipe; print(load_recipe('translation', '$RECIPE').model)")
MODEL=$(.venv/bin/python -c "from nlptasks.models import resolve_model; print(resolve_model('$PRESET'))")
mkdir -p "$OUT"
timed() { /usr/bin/time -f "$1: wall %e s, peak RSS %M KB" "${@:2}"; }
timed "before" $NLP eval translation --model "$MODEL" --recipe "$RECIPE" | tee "$OUT/before.txt"
timed "after" $NLP run translation --recipe "$RECIPE" --output-dir "$OUT/run" --quiet
.venv/bin/python - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
r = json.load(open(f"{out}/run/results.json"))
def show(name, metrics, intervals):
    print(name, *(f"{k} {metrics[k]:.2f} [{intervals[k][0]:.2f}, {intervals[k][1]:.2f}]"
                  for k in ("bleu", "chrf")), f"loss {metrics['loss']:.4f}")
print("before:", open(f"{out}/before.txt").readline().strip())
show("after: ", r["metrics"]["eval"], r["confidence_intervals"]["eval"])
t = r["train"]
print("train s", t["train_seconds"], "| eval s", t["eval_seconds"], "| steps", t["steps"],
      "| eval pairs", r["data"]["eval_examples"], "| train pairs", r["data"]["train_examples"])
print("signatures", r.get("metric_signatures"))
with open(f"{out}/run/predictions.jsonl") as lines:
    for line in list(lines)[:4]:
        row = json.loads(line)
        print(json.dumps({k: row[k] for k in ("source", "prediction", "reference")}, ensure_ascii=False))
PY
