#!/usr/bin/env bash
# The CUDA numbers of issue 16 in one run on a GPU machine (CPU numbers stay the reference):
#   WXY_DATA=<dir holding fashion_mnist/> bash benchmarks/cuda.sh [OUTDIR] [PART ...]
# PARTs (default all): bench   benchmarks 1, 5, 6 and 7 of benchmarks/run.py on cuda, 500 images
#                      chips10k the chip benchmark at 10,000 images
#                      train   3 epochs x 10,000 images, one process and a one-rank torchrun (nccl)
set -uo pipefail
out=${1:-runs/bench/cuda}
shift || true
parts=${*:-bench chips10k train}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # a checkout without pip install -e
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
$py -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__)" | tee -a "$out/gpu.txt"
if [[ " $parts " == *" bench "* ]]; then
    $py benchmarks/run.py --torch-device cuda --only chips training robust early-exit \
        --chip-ks 1 4 16 64 256 --steps 30 2>&1 | tee "$out/bench_500.txt"
fi
if [[ " $parts " == *" chips10k "* ]]; then
    $py benchmarks/run.py --torch-device cuda --only chips --engine-images 10000 --chip-ks 1 4 16 64 2>&1 \
        | tee "$out/bench_10000.txt"
fi
if [[ " $parts " == *" train "* ]]; then
    for how in plain torchrun; do
        rm -rf "/tmp/train_$how"
        launch=("$py"); [[ $how == torchrun ]] && launch=("$py" -m torch.distributed.run --nproc-per-node 1)
        t0=$(date +%s)
        "${launch[@]}" experiments/train.py --dataset fashion_mnist --subset 10000 --epochs 3 --torch-device cuda \
            --quiet --out "/tmp/train_$how" > "$out/train_$how.txt" 2>&1
        echo "rc $? $how, 3 epochs x 10000 images on cuda: $(( $(date +%s) - t0 )) s" | tee -a "$out/train_$how.txt"
        tail -6 "$out/train_$how.txt"
    done
fi
cp runs/bench/*.json "$out/" 2>/dev/null
