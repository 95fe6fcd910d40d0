# InternViT-6B in mmseg's EncoderDecoder: ImageNet mean/std, inputs padded to 504x504, sliding-window
# testing (crop 504, stride 322). linear_internvit.py and upernet_internvit.py add the heads.
_base_ = './internvit_data_preprocessor.py'
norm_cfg = dict(type='SyncBN', requires_grad=True)
data_preprocessor = dict(_base_.data_preprocessor, size=(504, 504))
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='InternViT',
        arch='6b',
        attn_backend='auto',
        drop_path_rate=0.0,
        with_cp=True,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/intern_vit_6b_224px.pth')),
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=(504, 504), stride=(322, 322)))
