#!/usr/bin/env bash
# The CUDA checks recorded in benchmarks/RESULTS.md, as run on a lent GPU machine (no network there: pacebench
# runs from the checkout with PYTHONPATH, the machine's own torch/timm, and carried wheels for SQLAlchemy/Alembic).
#   OUT=/some/dir bash benchmarks/gpu_session.sh
set -uo pipefail
export PYTHONPATH="${PYTHONPATH:-}:$PWD" PYTHONUNBUFFERED=1 PACEBENCH_RESULTS=/tmp/pb PACEBENCH_DB=sqlite:////tmp/pb/gpu.db
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" /tmp/pb
pb() { python3 -m pacebench "$@"; }
nvidia-smi -L; python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__)"

echo "== 1. step speed, memory and MFU, ViT-B/16 224px batch 64, every method: fp32, bf16, bf16 compiled"
METHODS=baseline,pace,pace_lazy,pace_fast,pace_multi,noise,fpa,sam,gp
pb bench --device cuda --precision fp32 --methods $METHODS --steps 20 --warmup 5
pb bench --device cuda --precision bf16 --methods $METHODS --steps 20 --warmup 5 --profile 25 | tee "$OUT/bench_bf16.txt"
pb bench --device cuda --precision bf16 --methods baseline,pace --steps 20 --warmup 5 --compile
pb report --table speed --format md | tee "$OUT/speed.md"
python3 benchmarks/data_epoch.py --device cuda --arch vit_base_patch16_224 --image-size 224 --patch-size 16 \
  --images 1024 --source-px 500 --workers 12 | tee "$OUT/data_epoch.md"

echo "== 2. the demo on CUDA (fp32, then bf16), 3 seeds"
pb run demo --device cuda --methods baseline,pace --seeds 0,1,2 --workers 0 | tail -8
pb run demo --device cuda --methods baseline,pace --seeds 0,1,2 -t precision=bf16 --workers 0 | tail -8
pb report --table demo --format md | tee "$OUT/demo_cuda.md"
pb plot grad-norm --suite demo --out "$OUT/demo_cuda_grad_norm.png"

echo "== 3. the VTAB pipeline at paper scale: NOAH lists 800/200/1000, ViT-B/16 from a local .safetensors file"
python3 - <<'PY'
import sys, timm, torch
sys.path.insert(0, "tests")
from pathlib import Path
from fake_trees import make_vtab
from safetensors.torch import save_file
make_vtab(Path("/tmp/data/vtab-1k/cifar"), classes=100, sizes={"test": 1000})
m = timm.create_model("vit_base_patch16_224", pretrained=False)
save_file({k: v.contiguous() for k, v in m.state_dict().items()}, "/tmp/vitb16_random.safetensors")
PY
pb data check vtab --root /tmp/data | tail -4
for prec in fp32 bf16; do
  /usr/bin/time -f "%e s wall ($prec)" python3 -m pacebench run vtab --datasets cifar100 --methods baseline,pace \
    --backbone vit_base_patch16_224 --weights /tmp/vitb16_random.safetensors --data-root /tmp/data \
    --epochs 3 -t eval_every=1 -t precision=$prec --device cuda --workers 12 | tail -3
done
python3 - <<'PY' | tee "$OUT/vtab_epochs.md"
import sqlite3
con = sqlite3.connect("/tmp/pb/gpu.db")
q = """select r.method, json_extract(r.hparams, '$.precision'), e.epoch, round(e.wall_time, 2), round(e.loss, 3),
       round(e.grad_norm_mean, 3), round(e.fp_distance, 3) from epochs e join runs r on r.id = e.run_id
       where r.suite = 'vtab' order by r.id, e.epoch"""
print("| method | precision | epoch | wall s (12 steps + eval 1000 + FP-distance 1000) | loss | grad norm | FP-dist |")
print("|---|---|---|---|---|---|---|")
for row in con.execute(q):
    print("| " + " | ".join(map(str, row)) + " |")
PY

echo "== 3b. a whole VTAB-1k run against the authors' fp32 train.py (needs their code, the data and ViT-B_16.npz)"
# AUTHORS=.../PACE/Vision DATA=... (holding vtab-1k/cifar) WEIGHTS=.../ViT-B_16.npz
if [ -n "${AUTHORS:-}" ] && [ -d "${DATA:-/nonexistent}/vtab-1k/cifar" ] && [ -f "${WEIGHTS:-/nonexistent}" ]; then
  # a lent machine allows 10 minutes per command: pacebench's whole bf16 run fits, the authors' fp32 run (about
  # 35 minutes on an H100) does not, so 30 of its 300 epochs run and its time is scaled; on a machine of your own,
  # drop --authors-epochs and add --also-fp32 for the accuracy check against a pacebench fp32 run
  python3 benchmarks/vtab_end_to_end.py --authors "$AUTHORS" --data-root "$DATA" --weights "$WEIGHTS" \
    --dataset cifar --method pace --epochs 300 --test-every 10 --authors-epochs 30 --workers 12 --device cuda \
    | tee "$OUT/vtab_end_to_end.md"
else
  echo "AUTHORS, DATA or WEIGHTS not given: the end-to-end comparison is skipped"
fi

echo "== 4. text methods at real model size (random weights; needs transformers and peft on the machine)"
if python3 -c "import transformers, peft" 2>/dev/null; then
  python3 benchmarks/text_speed.py --device cuda --model roberta --batch 32 --seq 128 | tee "$OUT/text_speed.md"
  python3 benchmarks/text_speed.py --device cuda --model phi3 --batch 8 --seq 512 --precision bf16 \
    | tail -4 | tee -a "$OUT/text_speed.md"
  # With real weights and data on the machine (see docs/text.md), the slides' comparison itself:
  if [ -d weights/roberta-base ] && [ -d data/glue/RTE ]; then
    pb run glue --datasets rte,mrpc --methods baseline,pace --seeds 0,1,2 --device cuda | tail -8
    pb report --table glue --format md | tee "$OUT/glue.md"
  fi
else
  echo "transformers/peft not installed: text part skipped"
fi
cp /tmp/pb/gpu.db "$OUT/gpu.db"
