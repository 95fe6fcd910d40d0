"""ImageNet-variant datasets with clear errors (mmpretrain's CustomDataset underneath)."""
import os
import os.path as osp

from mmpretrain.datasets import CustomDataset
from ..registry import register


@register('DATASETS', 'mmpretrain')
class CheckedImageFolder(CustomDataset):
    """``CustomDataset`` that names the missing folder, and whose class folders may be numeric
    (ImageNetV2 names them '0'..'999': ``numeric_classes=True`` sorts them as numbers)."""

    def __init__(self, *args, numeric_classes: bool = False, **kwargs):
        self.numeric_classes = numeric_classes
        super().__init__(*args, **kwargs)

    def load_data_list(self):
        root = self.img_prefix
        if root and not osp.isdir(root):
            raise FileNotFoundError(f'{type(self).__name__}: image folder not found: {root}')
        if self.ann_file and not osp.isfile(self.ann_file):
            raise FileNotFoundError(f'{type(self).__name__}: annotation file not found: {self.ann_file}')
        if self.numeric_classes and not self.ann_file:
            names = sorted((d for d in os.listdir(root) if osp.isdir(osp.join(root, d))), key=int)
            data_list = []
            for label, d in enumerate(names):
                if int(d) != label:
                    raise ValueError(f'{root}: numeric class folders must be 0..N-1, found {d!r} at position {label}')
                for f in sorted(os.listdir(osp.join(root, d))):
                    data_list.append(dict(img_path=osp.join(root, d, f), gt_label=label))
            return data_list
        return super().load_data_list()
