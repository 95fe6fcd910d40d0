import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS as PRETRAIN_MODELS
from mmseg.registry import MODELS as SEG_MODELS

from conftest import TINY
from perception.models import InternViT, InternViTPyramid


def test_registered_in_both_registries():
    for reg in (SEG_MODELS, PRETRAIN_MODELS):
        assert reg.get('InternViT') is InternViT
    assert SEG_MODELS.get('InternViTPyramid') is InternViTPyramid


def test_build_upernet_segmentor_from_config_dict():
    init_default_scope('mmseg')
    cfg = Config(dict(model=dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0, seg_pad_val=255,
                               size=(56, 56)),
        backbone=dict(type='InternViT', arch=TINY, out_indices=(0, 1, 2, 3), frozen=True),
        neck=dict(type='InternViTPyramid', in_channels=64),
        decode_head=dict(type='UPerHead', in_channels=[64] * 4, in_index=[0, 1, 2, 3], channels=32,
                         pool_scales=(1, 2, 3, 6), num_classes=5,
                         norm_cfg=dict(type='BN', requires_grad=True), align_corners=False,
                         loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
        auxiliary_head=dict(type='FCNHead', in_channels=64, in_index=1, channels=16, num_convs=1,
                            num_classes=5, norm_cfg=dict(type='BN', requires_grad=True),
                            loss_decode=dict(type='CrossEntropyLoss', loss_weight=0.4)),
        train_cfg=dict(), test_cfg=dict(mode='whole'))))
    model = SEG_MODELS.build(cfg.model)
    model.init_weights()
    assert isinstance(model.backbone, InternViT) and isinstance(model.neck, InternViTPyramid)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.neck.parameters())
    logits = model(torch.randn(2, 3, 56, 56), mode='tensor')
    assert logits.shape == (2, 5, 16, 16)  # the 4x-up level of the 4x4 grid


def test_build_backbone_in_mmpretrain_classifier():
    init_default_scope('mmpretrain')
    model = PRETRAIN_MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='InternViT', arch=TINY, out_indices=(-1,), output_cls_token=True, frozen=True),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=64)))
    model.init_weights()
    feats = model.extract_feat(torch.randn(2, 3, 56, 56))
    assert feats[0][1].shape == (2, 64)


@pytest.mark.slow
def test_registration_after_a_deploy_only_import():
    """`import perception.deploy` skips the heavy imports; library entry points still register."""
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    code = ('import sys, perception.deploy; assert "torch" not in sys.modules; '
            'from perception.inference import init_segmentor; '
            f'm = init_segmentor("{root}/mmcfg/demo/linear_internvit-tiny_1xb8-1k_demo-shapes-112x112.py"); '
            'print(type(m.backbone).__name__)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith('InternViT')
