#!/usr/bin/env bash
# Distributed training on PyTorch's own launcher: tools/dist_train.sh CONFIG NUM_PROCS [train.py args]
# Works on CPU (gloo) and GPUs (nccl). NNODES / NODE_RANK / MASTER_ADDR / PORT for several machines.
set -euo pipefail
CONFIG=$1
NPROC=$2
shift 2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=python
if ! "$PY" -c 'import torch,sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( $(nproc) / NPROC > 0 ? $(nproc) / NPROC : 1 ))}
fi
exec "$PY" -m torch.distributed.run --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
  --nproc_per_node="$NPROC" --master_port="$PORT" "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "$@"
