cd /work/main
D=/tmp/p/fsdpdata
for mode in eager compile; do
  rm -rf /tmp/p/fsdp_$mode
  extra=""; [ $mode = compile ] && extra="--compile force"
  PORT=29611 timeout 900 bash tools/dist_train.sh mmcfg/scale/upernet_internvit-tiny_fsdp-2xb4-100_demo-shapes-112x112.py 2 --work-dir /tmp/p/fsdp_$mode $extra --cfg-options train_cfg.max_iters=4 train_cfg.val_interval=100 default_hooks.checkpoint.interval=4 default_hooks.logger.interval=1 randomness.seed=0 train_dataloader.dataset.data_root=$D val_dataloader.dataset.data_root=$D test_dataloader.dataset.data_root=$D train_dataloader.num_workers=0 train_dataloader.persistent_workers=False val_dataloader.num_workers=0 val_dataloader.persistent_workers=False > /tmp/p/fsdp_$mode.log 2>&1
  echo "$mode rc=$?"
  grep -h "Iter(train)" /tmp/p/fsdp_$mode/*/*.log | sed 's/.*Iter/Iter/' | cut -c1-40,100-200
done
