"""The evaluation datasets in the folder layouts they ship in (as clip_benchmark reads them), the
release's preprocessing, and its caption cleaning.

Classification (``--data-root DIR``):

- ``imagenet1k``: ``DIR/val/<wnid>/*.JPEG`` (the validation images sorted into class folders);
- ``imagenet-v2``: ``DIR/ImageNetV2-matched-frequency/<class index>/*.jpeg``;
- ``imagenet-a``, ``imagenet-r``: ``DIR/<wnid>/*`` (200 classes each), ``imagenet-sketch``: ``DIR/<wnid>/*``;
- ``objectnet``: ``DIR/objectnet-1.0/images/<folder>/*`` and the mappings ``folder_to_objectnet_label.json``
  and ``objectnet_to_imagenet_1k.json`` (in ``DIR`` or ``DIR/objectnet-1.0/mappings``): the 113 folders
  that map to ImageNet, named by their ObjectNet label lower-cased.

A class folder's label is its wnid's index in the (sub)set, so a partial copy keeps the right labels.

Retrieval (``--data-root DIR``, the images and the Karpathy test annotations): Karpathy's
``dataset_flickr30k.json`` / ``dataset_coco.json`` (``split == 'test'``: 1000 / 5000 images), or the
release's ``flickr30k_test_karpathy.txt`` (images in ``DIR/Images``) / ``coco_test_karpathy.json``
(COCO caption format, images in ``DIR/val2014``).
"""
import json
import os
import os.path as osp
import re
from typing import List, Optional, Sequence, Tuple

from ..common.errors import InputError
from .prompts import imagenet_classnames, imagenet_wnids

CLASSIFICATION = ('imagenet1k', 'imagenet-v2', 'imagenet-a', 'imagenet-r', 'imagenet-sketch', 'objectnet')
RETRIEVAL = ('flickr30k', 'coco')
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, as the release (not CLIP's)
IMAGE_SIZE = 224
IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')  # torchvision's
ANNOTATIONS = {'flickr30k': ('flickr30k_test_karpathy.txt', 'dataset_flickr30k.json'),
               'coco': ('coco_test_karpathy.json', 'dataset_coco.json')}
MAX_WORDS = 50


class DatasetLayoutError(InputError, ValueError):
    """A data folder or annotation file that does not have the layout the dataset ships in."""


# ----------------------------------------------------------------------------- preprocessing
def to_rgb(img):
    return img.convert('RGB') if img.mode != 'RGB' else img


def build_transform(task: str, size: int = IMAGE_SIZE):
    """The release's ``build_transform``: classification resizes the short side to ``size`` (PIL bicubic)
    and centre-crops; retrieval resizes to ``size x size``; both then ImageNet mean / std."""
    import torchvision.transforms as T
    from torchvision.transforms import InterpolationMode
    resize = [T.Resize((size, size), interpolation=InterpolationMode.BICUBIC)] if task == 'retrieval' else \
        [T.Resize(size, interpolation=InterpolationMode.BICUBIC), T.CenterCrop(size)]
    return T.Compose([T.Lambda(to_rgb), *resize, T.ToTensor(), T.Normalize(mean=MEAN, std=STD)])


def clean_caption(caption: str, max_words: int = MAX_WORDS) -> str:
    """The release's ``pre_caption``: lower-cased, each of ``.!"()*#:;~`` replaced by a space, runs of
    whitespace collapsed, trimmed, cut to ``max_words`` words."""
    caption = re.sub(r"([.!\"()*#:;~])", ' ', caption.lower())
    caption = re.sub(r'\s{2,}', ' ', caption)
    caption = caption.rstrip('\n').strip(' ')
    words = caption.split(' ')
    return ' '.join(words[:max_words]) if len(words) > max_words else caption


class ImageList:
    """A map-style dataset of ``(path, label)`` -> ``(transformed image, label)``, read as the release reads
    (PIL, converted to RGB; no EXIF rotation). ``task``: 'classification' or 'retrieval' (the transform)."""

    def __init__(self, samples: Sequence[Tuple[str, int]], task: str, size: int = IMAGE_SIZE):
        self.samples, self.task = list(samples), task
        self.set_size(size)

    def set_size(self, size: int):
        """Preprocess for a model of input ``size`` (the release uses the model's image size)."""
        self.transform = build_transform(self.task, size)

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        from PIL import Image
        path, label = self.samples[i]
        with open(path, 'rb') as f:
            img = Image.open(f)
            img = self.transform(img.convert('RGB'))
        return img, label


# ----------------------------------------------------------------------------- classification folders
def _images(folder: str) -> List[str]:
    return sorted(osp.join(folder, f) for f in os.listdir(folder)
                  if f.lower().endswith(IMG_EXTENSIONS) and osp.isfile(osp.join(folder, f)))


def _class_folders(root: str, dataset: str, layout: str) -> List[str]:
    if not osp.isdir(root):
        raise DatasetLayoutError(f'{root}: no such folder ({dataset} expects {layout})')
    dirs = sorted(d for d in os.listdir(root) if osp.isdir(osp.join(root, d)))
    if not dirs:
        raise DatasetLayoutError(f'{root}: no class folders ({dataset} expects {layout})')
    return dirs


def _folder_samples(root, dataset, layout, labels: dict) -> List[Tuple[str, int]]:
    dirs = _class_folders(root, dataset, layout)
    unknown = [d for d in dirs if d not in labels]
    if unknown:
        raise DatasetLayoutError(f'{root}: folder {unknown[0]!r} is not a class of {dataset}' +
                                 (f' ({len(unknown)} such folders)' if len(unknown) > 1 else '') + f'; expected {layout}')
    if len(dirs) < len(labels):
        from mmengine.logging import print_log
        print_log(f'{root}: {len(dirs)} of the {len(labels)} class folders of {dataset} are present; the others '
                  'are not evaluated (labels stay those of the full set)', logger='current', level=30)
    return [(p, labels[d]) for d in dirs for p in _images(osp.join(root, d))]


def _objectnet(root: str):
    images = osp.join(root, 'objectnet-1.0', 'images')
    maps = next((d for d in (root, osp.join(root, 'objectnet-1.0', 'mappings'))
                 if osp.isfile(osp.join(d, 'folder_to_objectnet_label.json'))), None)
    if maps is None or not osp.isfile(osp.join(maps, 'objectnet_to_imagenet_1k.json')):
        raise DatasetLayoutError(f'{root}: no folder_to_objectnet_label.json and objectnet_to_imagenet_1k.json '
                                 'here or in objectnet-1.0/mappings (the ObjectNet 1.0 release has both)')
    with open(osp.join(maps, 'folder_to_objectnet_label.json')) as f:
        folder_label = json.load(f)
    with open(osp.join(maps, 'objectnet_to_imagenet_1k.json')) as f:
        mapped = set(json.load(f))
    folders = sorted(d for d, label in folder_label.items() if label in mapped)
    labels = {d: i for i, d in enumerate(folders)}
    dirs = _class_folders(images, 'objectnet', 'objectnet-1.0/images/<folder>/')
    samples = [(p, labels[d]) for d in dirs if d in labels for p in _images(osp.join(images, d))]
    return samples, [folder_label[d].lower() for d in folders]


def classification_data(dataset: str, root: str, lang: str = 'en') -> Tuple[List[Tuple[str, int]], List[str]]:
    """``(samples, classnames)`` of ``dataset`` under ``root`` (see the module docstring for layouts):
    the class names are the release's (OpenAI's for English) in label order."""
    if dataset not in CLASSIFICATION:
        raise DatasetLayoutError(f'dataset {dataset!r}: expected one of {CLASSIFICATION}')
    if dataset == 'objectnet':
        if lang != 'en':
            raise DatasetLayoutError(f"objectnet has English class names only (its own labels), not {lang!r}")
        samples, names = _objectnet(root)
    elif dataset == 'imagenet-v2':
        folder = osp.join(root, 'ImageNetV2-matched-frequency')
        labels = {str(i): i for i in range(1000)}
        samples = _folder_samples(folder, dataset, 'DIR/ImageNetV2-matched-frequency/<0..999>/*.jpeg', labels)
        names = imagenet_classnames(lang)
    else:
        subset = dataset if dataset in ('imagenet-a', 'imagenet-r') else None
        wnids = imagenet_wnids(subset)
        folder = osp.join(root, 'val') if dataset == 'imagenet1k' else root
        layout = 'DIR/val/<wnid>/*.JPEG' if dataset == 'imagenet1k' else 'DIR/<wnid>/*'
        samples = _folder_samples(folder, dataset, layout, {w: i for i, w in enumerate(wnids)})
        names = imagenet_classnames(lang, subset)
    if not samples:
        raise DatasetLayoutError(f'{root}: no images ({", ".join(IMG_EXTENSIONS)}) in the class folders of {dataset}')
    return samples, names


# ----------------------------------------------------------------------------- retrieval annotations
def find_annotations(dataset: str, root: str, annotations: Optional[str] = None) -> str:
    if annotations:
        if not osp.isfile(annotations):
            raise DatasetLayoutError(f'{annotations}: no such annotation file')
        return annotations
    for name in ANNOTATIONS[dataset]:
        if osp.isfile(osp.join(root, name)):
            return osp.join(root, name)
    raise DatasetLayoutError(f'{root}: none of {list(ANNOTATIONS[dataset])} here; pass --annotations FILE '
                             "(Karpathy's dataset_*.json or the release's test annotations)")


def _read_annotations(dataset: str, path: str):
    """``[(relative image path candidates, [captions])]`` in file order."""
    if path.endswith('.txt'):  # the release's flickr30k_*_karpathy.txt: a header, then "NAME.jpg,caption"
        data = {}
        with open(path, encoding='utf-8') as f:
            f.readline()
            for n, line in enumerate(f, 2):
                line = line.strip()
                if line:
                    if '.jpg,' not in line:
                        raise DatasetLayoutError(f'{path}:{n}: expected "IMAGE.jpg,caption", got {line[:80]!r}')
                    img, cap = line.split('.jpg,', 1)
                    data.setdefault(img + '.jpg', []).append(cap)
        return [((osp.join('Images', k), k), v) for k, v in data.items()]
    try:
        with open(path, encoding='utf-8') as f:
            ann = json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetLayoutError(f'{path}: not JSON ({e})') from None
    if isinstance(ann, dict) and 'annotations' in ann:  # COCO captions format (the release's coco_test_karpathy.json)
        caps = {}
        for a in ann['annotations']:
            caps.setdefault(a['image_id'], []).append(a['caption'])
        return [((osp.join('val2014', im['file_name']), im['file_name']), caps.get(im['id'], []))
                for im in sorted(ann['images'], key=lambda im: im['id'])]
    if isinstance(ann, dict) and isinstance(ann.get('images'), list) and ann['images'] and 'sentences' in ann['images'][0]:
        out = []
        for im in ann['images']:
            if im.get('split') == 'test':
                rel = (osp.join(im.get('filepath', ''), im['filename']), osp.join('Images', im['filename']),
                       osp.join('flickr30k-images', im['filename']), im['filename'])
                out.append((rel, [s['raw'] for s in im['sentences']]))
        return out
    raise DatasetLayoutError(f"{path}: neither Karpathy's dataset_*.json (images[].sentences), the COCO caption "
                             'format (images, annotations) nor the release\'s flickr30k_*_karpathy.txt')


def retrieval_data(dataset: str, root: str, annotations: Optional[str] = None) -> Tuple[List[str], List[List[str]]]:
    """``(image paths, cleaned captions of each image)`` of the Karpathy test split of ``dataset``."""
    if dataset not in RETRIEVAL:
        raise DatasetLayoutError(f'dataset {dataset!r}: expected one of {RETRIEVAL}')
    path = find_annotations(dataset, root, annotations)
    items = _read_annotations(dataset, path)
    if not items:
        raise DatasetLayoutError(f'{path}: no test images in this annotation file')
    candidates = items[0][0]
    base = next((c for c in candidates if osp.isfile(osp.join(root, c))), None)
    if base is None:
        raise DatasetLayoutError(f'{root}: the first test image is at none of {list(candidates)}')
    which = candidates.index(base)
    images, captions = [], []
    for rel, caps in items:
        p = osp.join(root, rel[which])
        if not osp.isfile(p):
            raise DatasetLayoutError(f'{p}: missing (named in {path})')
        if not caps:
            raise DatasetLayoutError(f'{path}: image {rel[which]!r} has no captions')
        images.append(p)
        captions.append([clean_caption(c) for c in caps])
    return images, captions
