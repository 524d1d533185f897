#!/usr/bin/env bash
# The offline translation default: SmolLM2-135M-Instruct, English -> French Bible verses
# (World English Bible -> Louis Segond 1910), BLEU and chrF on the 511 held-out pairs (six
# whole books) before and after fine-tuning on 1,000 training pairs (recipe translation/smollm2).
# Prints each command's wall time and peak RSS (GNU time) and writes runs under $OUT.
#   bash benchmarks/smollm2_translation.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/smollm2-translation}
export HF_HUB_OFFLINE=1
NLP=.venv/bin/nlptasks
MODEL=$(.venv/bin/python -c "from nlptasks.models import resolve_model; print(resolve_model('smollm2-135m'))")
mkdir -p "$OUT"
timed() { /usr/bin/time -f "$1: wall %e s, peak RSS %M KB" "${@:2}"; }
timed "before" $NLP eval translation --model "$MODEL" --recipe smollm2 | tee "$OUT/before.txt"
timed "after" $NLP run translation --recipe smollm2 --output-dir "$OUT/run" --quiet
.venv/bin/python - "$OUT/run" <<'PY'
import json, sys
r = json.load(open(f"{sys.argv[1]}/results.json"))
m, t = r["metrics"]["eval"], r["train"]
print("after: bleu", round(m["bleu"], 2), "chrf", round(m["chrf"], 2), "loss", round(m["loss"], 4),
      "| train s", t["train_seconds"], "(eval s", t["eval_seconds"], ")",
      "| eval pairs", r["data"]["eval_examples"], "| train pairs", r["data"]["train_examples"])
print("signatures", r.get("metric_signatures"))
PY
