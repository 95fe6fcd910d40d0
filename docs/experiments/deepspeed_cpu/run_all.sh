#!/bin/bash
# Re-run the CPU DeepSpeed experiments (deepspeed 0.19.8 in /tmp/ds_exp/site).
set -e
cd /tmp/ds_exp
export DS_BUILD_OPS=0 PYTHONPATH=/tmp/ds_exp/site
PY=/work/main/.venv/bin/python
for s in 2 3; do $PY -m torch.distributed.run --nproc_per_node 2 plain_ds.py $s; done
DS_OPT=1 $PY -m torch.distributed.run --nproc_per_node 2 plain_ds.py 2   # DS-config AdamW
for s in 2 3; do $PY -m torch.distributed.run --nproc_per_node 2 mm_ds.py $s; done
