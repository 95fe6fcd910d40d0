"""Training machinery: layer-wise lr decay, bf16 optimizer wrapper, hooks."""
