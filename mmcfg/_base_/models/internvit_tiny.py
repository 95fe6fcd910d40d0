# A tiny InternViT (6B layout: RMSNorm, full-width q/k norm, no qkv bias) for demos and tests.
tiny_arch = dict(embed_dims=96, num_layers=6, num_heads=4, feedforward_channels=384, norm_type='rms_norm',
                 qk_normalization=True, qkv_bias=False, patch_size=14, img_size=224)
backbone = dict(type='InternViT', arch=tiny_arch, out_indices=(1, 3, 5), attn_backend='auto',
                drop_path_rate=0.0, with_cp=False, frozen=False, output_cls_token=False)
