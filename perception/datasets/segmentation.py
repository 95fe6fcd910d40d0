"""The segmentation datasets (ADE20K, COCO-Stuff-164k, Pascal Context-59, Cityscapes, your own folder, the demo
shapes) behind one set of checks, and few-shot subsets."""
import os
import os.path as osp
from typing import List, Optional

import numpy as np
from mmengine.logging import print_log
from mmseg.datasets import (ADE20KDataset, BaseSegDataset, CityscapesDataset, COCOStuffDataset,
                            PascalContextDataset59)

from ..common.images import IMG_EXTS, ORIENTATIONS, exif_orientation, png_conversion_note
from ..registry import register
from .demo_data import CLASSES as DEMO_CLASSES
from .demo_data import PALETTE as DEMO_PALETTE
from .transforms import check_png_label_map


def few_shot_subset(items: List, divisor: int, seed: int = 0) -> List:
    """The reference's few-shot rule: a seeded shuffle, then the first ``len // divisor`` items
    (20210 // N for ADE20K). Deterministic for a given item order and seed."""
    if divisor < 1:
        raise ValueError(f'few-shot divisor must be >= 1, got {divisor}')
    order = np.random.RandomState(seed).permutation(len(items))
    keep = max(1, len(items) // divisor)
    return [items[i] for i in order[:keep]]


class _CheckedSegData:
    """The checks of every segmentation dataset here (ADE20K layout or your own), ahead of mmseg's
    base class in the MRO: folders, annotations and label maps named when wrong."""

    few_shot_divisor: Optional[int] = None  # the ADE20K loader takes these as arguments
    few_shot_seed: int = 0
    subset_files: Optional[List[str]] = None

    def load_data_list(self) -> List[dict]:
        img_dir = self.data_prefix.get('img_path', '')
        ann_dir = self.data_prefix.get('seg_map_path', '')
        for what, d in (('image', img_dir), ('annotation', ann_dir)):
            if d and not osp.isdir(d):
                raise FileNotFoundError(f'{type(self).__name__}: {what} folder not found: {d} '
                                        f'(data_root={self.data_root!r})')
        data_list = super().load_data_list()
        if not data_list:
            raise FileNotFoundError(f'{type(self).__name__}: no *{self.img_suffix} images in {img_dir}')
        if img_dir and osp.isdir(img_dir):  # images of another type would be left out without a word
            other = sorted(f for f in os.listdir(img_dir) if osp.splitext(f)[1].lower() in IMG_EXTS
                           and not f.endswith(self.img_suffix))
            if other:
                raise ValueError(f'{type(self).__name__}: {img_dir} holds {len(other)} image(s) that are not '
                                 f'*{self.img_suffix} ({", ".join(other[:5])}{", ..." if len(other) > 5 else ""}): '
                                 f'they would be left out; convert them or set img_suffix')
        for d in data_list:
            seg = d.get('seg_map_path')
            if seg and not osp.isfile(seg):
                raise FileNotFoundError(f'annotation missing for image {d["img_path"]}: expected {seg}')
        if self.few_shot_divisor:
            data_list = few_shot_subset(data_list, int(self.few_shot_divisor), self.few_shot_seed)
            self.subset_files = [osp.relpath(d['img_path'], img_dir) for d in data_list]
        return data_list


    def prepare_data(self, idx):
        """The pipeline on one sample; the label map's format is checked before mmseg reads it, and any
        failure names the image and annotation files (mmcv's own errors name neither)."""
        info = self.get_data_info(idx)
        check_png_label_map(info.get('seg_map_path'))
        img = info.get('img_path')
        self.check_orientation(img, info.get('seg_map_path'))
        if img and not getattr(self, '_announced_conversion', False) and img.lower().endswith('.png') \
                and osp.isfile(img):
            note = png_conversion_note(img)
            if note:  # mmcv decodes it so (as inference does); say so once per dataset
                self._announced_conversion = True
                print_log(f'{type(self).__name__}: images such as {img} are read as 8-bit colour ({note}); '
                          'convert them beforehand to choose another mapping', logger='current', level=30)
        try:
            return super().prepare_data(idx)
        except Exception as e:
            files = [info.get('img_path'), info.get('seg_map_path')]
            if any(f and f in str(e) for f in files):
                raise
            raise ValueError(f'sample {idx} ({", ".join(f for f in files if f)}): {type(e).__name__}: {e}') from e

    def check_orientation(self, img: Optional[str], seg: Optional[str]):
        """Refuse an image whose EXIF orientation tag (2..8) the decoder applies when it has a label map:
        mmcv's LoadImageFromFile (OpenCV or Pillow, colour) turns the image's pixels upright, while
        mmseg's LoadAnnotations reads label maps as stored (``unchanged``): image and labels would no
        longer match. Turning the label map as well is no fix: whether it was drawn on the stored or
        on the upright pixels cannot be told from the files (annotation tools show the upright image)."""
        if not (img and seg and osp.isfile(img)) or not self._decoder_orients():
            return
        tag = exif_orientation(img)
        if tag not in ORIENTATIONS:
            return
        own = exif_orientation(seg) if osp.isfile(seg) else None
        note = f' (its own tag {own} is ignored: label maps are read as stored)' if own in ORIENTATIONS else ''
        raise ValueError(f'{img}: EXIF orientation tag {tag}: training decodes this image {ORIENTATIONS[tag]}, '
                         f'but reads its label map {seg} as stored{note}: they would not match; store the image '
                         'upright (e.g. PIL.ImageOps.exif_transpose) if its labels were drawn on the upright image, '
                         'else set the tag to 1')

    def _decoder_orients(self) -> bool:
        """Whether the pipeline's image loader applies EXIF orientation (mmcv's LoadImageFromFile does
        for color_type 'color' / 'grayscale' with the cv2 or pillow backend, the default)."""
        for t in getattr(getattr(self, 'pipeline', None), 'transforms', None) or []:
            if hasattr(t, 'color_type'):  # LoadImageFromFile and its subclasses
                return (t.color_type in ('color', 'grayscale')
                        and getattr(t, 'imdecode_backend', 'cv2') in ('cv2', 'pillow'))
        return True


@register('DATASETS', 'mmseg')
class PerceptionADE20KDataset(_CheckedSegData, ADE20KDataset):
    """mmseg's ``ADE20KDataset`` (150 classes, ``reduce_zero_label=True``) with:

    * a clear error naming the folder when the image or annotation folder is missing, and naming the
      image when its annotation is missing;
    * ``few_shot_divisor=N``: keep a seeded-shuffle subset of ``len // N`` images (few-shot runs);
      the chosen files are in ``self.subset_files`` (``FewShotSubsetHook`` saves them in the work dir).
    """

    def __init__(self, few_shot_divisor: Optional[int] = None, few_shot_seed: int = 0, **kwargs):
        self.few_shot_divisor = few_shot_divisor
        self.few_shot_seed = few_shot_seed
        self.subset_files: Optional[List[str]] = None
        super().__init__(**kwargs)

@register('DATASETS', 'mmseg')
class PerceptionSegDataset(_CheckedSegData, BaseSegDataset):
    """Your own data: a folder of images and a folder of label maps (``docs/custom_dataset.md``), the
    class names and palette from ``metainfo=dict(classes=..., palette=...)`` in the config, with the
    same checks as the ADE20K loader (missing folders and annotations, images of another type,
    label maps that would change meaning, unreadable files: each named)."""

    def __init__(self, few_shot_divisor: Optional[int] = None, few_shot_seed: int = 0, **kwargs):
        if not (kwargs.get('metainfo') or {}).get('classes'):
            raise ValueError('PerceptionSegDataset needs metainfo=dict(classes=(...), palette=[...]) in the config')
        self.few_shot_divisor = few_shot_divisor
        self.few_shot_seed = few_shot_seed
        self.subset_files: Optional[List[str]] = None
        super().__init__(**kwargs)


@register('DATASETS', 'mmseg')
class PerceptionCOCOStuffDataset(_CheckedSegData, COCOStuffDataset):
    """COCO-Stuff-164k (171 classes; ``images/{train,val}2017/*.jpg`` with
    ``annotations/{train,val}2017/*_labelTrainIds.png``, mmseg's converted layout), with the checks."""


@register('DATASETS', 'mmseg')
class PerceptionPascalContextDataset59(_CheckedSegData, PascalContextDataset59):
    """Pascal Context-59 (``VOC2010/JPEGImages``, ``SegmentationClassContext/*.png``, the split lists in
    ``ImageSets/SegmentationContext/{train,val}.txt``; label 0 is background: reduce_zero_label)."""


@register('DATASETS', 'mmseg')
class PerceptionCityscapesDataset(_CheckedSegData, CityscapesDataset):
    """Cityscapes (19 classes; ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with
    ``gtFine/<split>/<city>/*_gtFine_labelTrainIds.png``), with the checks."""


@register('DATASETS', 'mmseg')
class DemoShapesDataset(PerceptionADE20KDataset):
    """The generated demo dataset (``tools/make_demo_data.py``): 6 shape/texture classes."""
    METAINFO = dict(classes=DEMO_CLASSES, palette=[list(p) for p in DEMO_PALETTE])
