"""``init_cfg=dict(type='Pretrained', checkpoint=...)`` that understands every InternViT format.

mmengine's ``PretrainedInit`` loads with ``strict=False`` and knows one key layout. This subclass
routes InternViT / InternViTAdapter backbones and segmentors with one of them through perception's
strict loaders (the adapter's: :mod:`perception.models.adapter_loading`); every other module gets
mmengine's behaviour. It is registered as ``Pretrained`` in mmseg's and mmpretrain's own
``WEIGHT_INITIALIZERS`` (children of mmengine's), which mmengine consults under those default scopes;
mmengine's root registry, and so every other scope in the process, keeps mmengine's initializer.
"""
from mmengine.model.weight_init import PretrainedInit, update_init_info

from ..registry import register


@register('WEIGHT_INITIALIZERS', 'mmseg', 'mmpretrain', name='Pretrained')
class InternViTAwarePretrainedInit(PretrainedInit):

    def __call__(self, module):
        from ..checkpoint.loader import load_pretrained_into
        from ..models.adapter import InternViTAdapter
        from ..models.adapter_loading import load_adapter_pretrained
        from ..models.internvit import InternViT
        from ..segmentation.checkpoint import load_segmentor_checkpoint
        target = getattr(module, 'module', module)
        backbone = getattr(target, 'backbone', None)
        if isinstance(target, InternViT):
            load_pretrained_into(target, self.checkpoint, prefix=self.prefix)
        elif isinstance(target, InternViTAdapter):
            load_adapter_pretrained(target, self.checkpoint, prefix=self.prefix)
        elif isinstance(backbone, (InternViT, InternViTAdapter)) and self.prefix is None:
            # children are initialised first: a backbone already loaded from its own Pretrained
            # init_cfg is not read again when the segmentor file has no ViT weights
            loaded = bool(getattr(backbone, '_is_init', False)
                          and (backbone.init_cfg or {}).get('type') == 'Pretrained')
            load_segmentor_checkpoint(target, self.checkpoint, backbone_already_loaded=loaded)
        else:
            return super().__call__(module)
        if hasattr(module, '_params_init_info'):
            update_init_info(module, init_info=self._get_init_info())

