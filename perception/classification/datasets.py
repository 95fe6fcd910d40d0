"""ImageNet-variant datasets with clear errors (mmpretrain's CustomDataset underneath)."""
import os
import os.path as osp

from mmpretrain.datasets import CustomDataset
from ..registry import register


def pass_num_classes(cfg):
    """Give each ``CheckedImageFolder`` of the config the head's class count (unless it sets its own),
    so a label the head cannot score is refused naming its file, not an index error mid-training."""
    n = ((cfg.get('model') or {}).get('head') or {}).get('num_classes')
    if n is None:
        return cfg
    for split in ('train', 'val', 'test'):
        ds = (cfg.get(f'{split}_dataloader') or {}).get('dataset')
        if isinstance(ds, dict) and ds.get('type') == 'CheckedImageFolder' and 'num_classes' not in ds:
            ds['num_classes'] = int(n)
    return cfg


@register('DATASETS', 'mmpretrain')
class CheckedImageFolder(CustomDataset):
    """``CustomDataset`` that names the missing folder, and whose class folders may be numeric
    (ImageNetV2 names them '0'..'999': ``numeric_classes=True`` sorts them as numbers)."""

    def __init__(self, *args, numeric_classes: bool = False, num_classes=None, **kwargs):
        self.numeric_classes = numeric_classes
        self.num_classes = num_classes  # when given: every label must be below it
        super().__init__(*args, **kwargs)

    def prepare_data(self, idx):
        """The pipeline on one sample; a failure names the image (mmcv's decoder errors do not)."""
        try:
            return super().prepare_data(idx)
        except Exception as e:
            path = self.get_data_info(idx).get('img_path')
            if path and path in str(e):
                raise
            raise ValueError(f'sample {idx} ({path}): {type(e).__name__}: {" ".join(str(e).split())}') from e

    def load_data_list(self):
        root = self.img_prefix
        if root and not osp.isdir(root):
            raise FileNotFoundError(f'{type(self).__name__}: image folder not found: {root}')
        if self.ann_file and not osp.isfile(self.ann_file):
            raise FileNotFoundError(f'{type(self).__name__}: annotation file not found: {self.ann_file}')
        if self.numeric_classes and not self.ann_file:
            names = [d for d in os.listdir(root) if osp.isdir(osp.join(root, d))]
            odd = sorted(d for d in names if not d.isdigit())
            if odd:
                raise ValueError(f'{root}: numeric_classes=True but class folder(s) {odd[:5]} are not numbers '
                                 '(expected 0..N-1)')
            names = sorted(names, key=int)
            data_list = []
            for label, d in enumerate(names):
                if int(d) != label:
                    raise ValueError(f'{root}: numeric class folders must be 0..N-1, found {d!r} at position {label}')
                for f in sorted(os.listdir(osp.join(root, d))):
                    data_list.append(dict(img_path=osp.join(root, d, f), gt_label=label))
            return self._check_labels(data_list)
        if self.ann_file:
            return self._check_labels(self._read_ann_file(root))
        return self._check_labels(super().load_data_list())

    def _read_ann_file(self, root):
        """``relative/path label`` per line (mmpretrain's format), each line checked: a malformed line
        or a listed image that is not there is named with its line number."""
        data_list = []
        with open(self.ann_file) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                parts = line.strip().rsplit(' ', 1)
                if len(parts) != 2 or not parts[1].lstrip('-').isdigit():
                    raise ValueError(f'{self.ann_file}:{n}: expected "relative/path/to/image label", got {line.strip()!r}')
                path = osp.join(root, parts[0]) if root else parts[0]
                if not osp.isfile(path):
                    raise FileNotFoundError(f'{self.ann_file}:{n}: image {path} not found')
                data_list.append(dict(img_path=path, gt_label=int(parts[1])))
        if not data_list:
            raise ValueError(f'{self.ann_file}: lists no images')
        return data_list

    def _check_labels(self, data_list):
        if not data_list:
            raise FileNotFoundError(f'{type(self).__name__}: no images in {self.img_prefix}')
        labels = [int(d['gt_label']) for d in data_list]
        n = self.num_classes
        if n is not None:
            bad = sorted({v for v in labels if not 0 <= v < n})
            if bad:
                src = self.ann_file or self.img_prefix
                raise ValueError(f'{src}: labels {bad[:10]} are outside [0, {n}) (the head has {n} classes)')
        return data_list
