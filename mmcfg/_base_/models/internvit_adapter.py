# InternViT-6B + ViT-Adapter in mmseg's EncoderDecoder, InternVL-MMDetSeg's frozen-6B settings
# (configs/intern_vit_6b/vit_adapter/upernet_intern_vit_adapter_6b_512_80k_ade20k_bs16_lr4e-5.py): the adapter gives
# four embed_dims-channel maps at strides 4/8/16/32 itself (no pyramid neck). upernet_internvit_adapter.py and
# mask2former_internvit_adapter.py add the heads. Training inputs padded to 512x512 (the head bases set their crop);
# test inputs padded (mean colour) to multiples of 32, as the adapter needs (mmseg's size_divisor; the padding rule
# of perception/segmentation/padding.py does the same in tools/infer.py and the exported runtime).
_base_ = './internvit_data_preprocessor.py'
data_preprocessor = dict(_base_.data_preprocessor, size=(512, 512), test_cfg=dict(size_divisor=32))
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='InternViTAdapter',
        arch='6b',
        patch_size=16,  # the adapter needs 16; the release's 14x14 kernel is resampled at load (announced)
        img_size=512,  # the fork's 32x32 position grid (resampled from the release's 16x16 at load)
        interaction_indexes=[[0, 11], [12, 23], [24, 35], [36, 47]],
        conv_inplane=64,
        n_points=4,
        deform_ratio=0.25,
        with_cffn=True,
        cffn_ratio=0.25,
        init_values=0.0,
        add_vit_feature=True,
        use_extra_extractor=True,
        use_final_norm=True,
        freeze_vit=True,
        drop_path_rate=0.0,
        with_cp=True,
        attn_backend='auto',
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/InternViT-6B-224px')),
    train_cfg=dict())
