"""Zero-shot classification and retrieval as the release runs them, in phases so the 14B fits in 24 GiB:
every text embedding first (cached, see :mod:`.cache`), the text tower freed, then the images (for
InternVL-G: the ViT tokens of every image to a memory-mapped file, the ViT freed, then the queries).

``load(parts)`` builds the model with only ``parts`` (``'text'``, ``'vision'``, ``'queries'``); by default
:func:`perception.models.internvl_clip_loading.load_internvl_clip` on ``weights``."""
import gc
import os
import os.path as osp
import tempfile
import time
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.logging import print_log

from .cache import TextEmbeddingCache
from .classifier import encode_texts, zero_shot_classifier, zero_shot_logits
from .datasets import IMAGE_SIZE, ImageList, classification_data, retrieval_data
from .metrics import mean_per_class_recall, retrieval_recall, topk_accuracy
from .prompts import check_templates, imagenet_templates
from .tokenizer import load_internvl_tokenizer, tokenizer_file

MODES = ('InternVL-C', 'InternVL-G')


def default_loader(weights, mode: str, dtype: str, device: str, attn_backend: str = 'auto') -> Callable:
    def load(parts):
        from ..models.internvl_clip_loading import load_internvl_clip
        return load_internvl_clip(weights, mode=mode, parts=parts, dtype=dtype, device=device,
                                  attn_backend=attn_backend)
    return load


def _free(model):
    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def every_nth(items: list, limit: Optional[int], what: str) -> list:
    """At most ``limit`` items, evenly spaced (every class keeps its share), announced."""
    if not limit or limit >= len(items):
        return items
    step = len(items) / limit
    out = [items[int(i * step)] for i in range(limit)]
    print_log(f'--limit {limit}: evaluating {limit} of {len(items)} {what}, evenly spaced', logger='current', level=30)
    return out


def image_embeddings(load: Callable, dataset: ImageList, mode: str, batch_size: int, workers: int,
                     work_dir: Optional[str] = None, progress: bool = True) -> torch.Tensor:
    """Unit image embeddings ``[N, dim]`` (float32, CPU) in the phases of ``mode``."""
    from tqdm import tqdm
    if mode not in MODES:
        raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
    model = load(('vision',))
    size = int(getattr(model, 'config', {}).get('vision', {}).get('img_size', IMAGE_SIZE))
    dataset.set_size(size)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=False)
    if mode == 'InternVL-C':
        out = []
        with torch.inference_mode():
            for x, _ in tqdm(loader, desc='images', unit='batch', disable=not progress):
                out.append(F.normalize(model.encode_image(x, 'InternVL-C').float(), dim=-1).cpu())
        _free(model)
        return torch.cat(out)
    # InternVL-G: ViT tokens of every image to disk, the ViT freed, then the queries over them
    tmp_dir = tempfile.mkdtemp(prefix='vit_tokens_', dir=work_dir)
    path = osp.join(tmp_dir, 'tokens.npy')
    try:
        tokens, dtype, i = None, None, 0
        with torch.inference_mode():
            for x, _ in tqdm(loader, desc='ViT tokens', unit='batch', disable=not progress):
                t = model.vision_tokens(x).cpu()
                if tokens is None:
                    dtype = t.dtype
                    nbytes = len(dataset) * t[0].numel() * t.element_size()
                    print_log(f'InternVL-G: ViT tokens of {len(dataset)} images ({nbytes / 2 ** 30:.1f} GiB) kept in '
                              f'{path} while the ViT is replaced by the queries', logger='current')
                    tokens = np.lib.format.open_memmap(path, mode='w+', dtype=np.int16 if t.element_size() == 2
                                                       else np.float32, shape=(len(dataset), *t.shape[1:]))
                tokens[i:i + len(t)] = (t.view(torch.int16) if t.element_size() == 2 else t.float()).numpy()
                i += len(t)
        tokens.flush()
        _free(model)
        model = load(('queries',))
        out = []
        with torch.inference_mode():
            for s in tqdm(range(0, len(dataset), batch_size), desc='queries', unit='batch', disable=not progress):
                t = torch.from_numpy(np.ascontiguousarray(tokens[s:s + batch_size]))
                t = t.view(dtype) if dtype.itemsize == 2 else t
                out.append(F.normalize(model.encode_image_tokens(t, 'InternVL-G').float(), dim=-1).cpu())
        _free(model)
        del tokens
        return torch.cat(out)
    finally:
        if osp.isfile(path):
            os.unlink(path)
        os.rmdir(tmp_dir)


def _setup(weights, tokenizer, cache_dir, dtype):
    if tokenizer is None:  # the weights folder holds it (InternVL-14B-224px); a .pth may have it beside it
        tokenizer = weights if osp.isdir(weights) else osp.join(osp.dirname(osp.abspath(weights)), 'tokenizer.model')
        if not osp.isfile(tokenizer_file(tokenizer) if osp.isdir(tokenizer) else tokenizer):
            raise FileNotFoundError(f'{weights}: no tokenizer.model beside this checkpoint; pass --tokenizer, the '
                                    "release's tokenizer.model (InternVL-14B-224px ships it) or its folder")
    tok_path = tokenizer_file(tokenizer)
    return load_internvl_tokenizer(tok_path), TextEmbeddingCache(cache_dir, weights, tok_path, dtype)


def run_classification(weights, dataset: str, data_root: str, mode: str = 'InternVL-C', lang: str = 'en',
                       templates: Optional[List[str]] = None, tokenizer=None, cache_dir: Optional[str] = None,
                       dtype: str = 'bf16', device: str = 'cpu', batch_size: int = 32, text_batch_size: int = 64,
                       workers: int = 2, limit: Optional[int] = None, work_dir: Optional[str] = None,
                       load: Optional[Callable] = None, progress: bool = True) -> Dict:
    """Zero-shot top-1 / top-5 and mean per-class recall of ``dataset`` (see :mod:`.datasets` for layouts).

    ``templates``: default the release's for ``lang``; ``tokenizer``: a ``tokenizer.model`` or its folder
    (default ``weights``' folder)."""
    samples, classnames = classification_data(dataset, data_root, lang)
    samples = every_nth(samples, limit, 'images')
    templates = check_templates(list(templates), 'templates') if templates is not None else imagenet_templates(lang)
    tok, cache = _setup(weights, tokenizer, cache_dir, dtype)
    load = load or default_loader(weights, mode, dtype, device)
    t0 = time.perf_counter()

    def build():
        model = load(('text',))
        try:
            return zero_shot_classifier(model, tok, classnames, templates, text_batch_size, progress=progress,
                                        allow_duplicates=True)  # checked when read
        finally:
            _free(model)
    classifier = cache.get('classifier', f'{dataset} ({lang})', {'classnames': classnames, 'templates': templates},
                           build)
    t1 = time.perf_counter()
    data = ImageList(samples, 'classification')
    emb = image_embeddings(load, data, mode, batch_size, workers, work_dir or cache_dir, progress)
    t2 = time.perf_counter()
    logits = zero_shot_logits(emb, classifier)
    target = torch.tensor([s[1] for s in samples])
    acc = topk_accuracy(logits, target, (1, 5))
    return {'dataset': dataset, 'mode': mode, 'lang': lang, 'images': len(samples), 'classes': len(classnames),
            'templates': len(templates), 'top1': 100 * acc[1], 'top5': 100 * acc[5],
            'mean_per_class_recall': 100 * mean_per_class_recall(logits.argmax(1), target),
            'text_s': t1 - t0, 'image_s': t2 - t1, 'images_per_s': len(samples) / max(t2 - t1, 1e-9)}


def run_retrieval(weights, dataset: str, data_root: str, mode: str = 'InternVL-C', annotations: Optional[str] = None,
                  tokenizer=None, cache_dir: Optional[str] = None, dtype: str = 'bf16', device: str = 'cpu',
                  batch_size: int = 32, text_batch_size: int = 64, workers: int = 2, limit: Optional[int] = None,
                  work_dir: Optional[str] = None, load: Optional[Callable] = None, progress: bool = True) -> Dict:
    """Recall@1/5/10 image -> text and text -> image on the Karpathy test split of ``dataset``."""
    images, captions = retrieval_data(dataset, data_root, annotations)
    pairs = every_nth(list(zip(images, captions)), limit, 'images')
    images, captions = [p for p, _ in pairs], [c for _, c in pairs]
    texts = [c for caps in captions for c in caps]
    text_image = torch.tensor([i for i, caps in enumerate(captions) for _ in caps])
    tok, cache = _setup(weights, tokenizer, cache_dir, dtype)
    load = load or default_loader(weights, mode, dtype, device)
    t0 = time.perf_counter()

    def build():
        model = load(('text',))
        try:
            return encode_texts(model, tok, texts, text_batch_size, desc='captions', progress=progress)
        finally:
            _free(model)
    text_emb = cache.get('captions', dataset, {'captions': texts}, build)
    t1 = time.perf_counter()
    data = ImageList([(p, i) for i, p in enumerate(images)], 'retrieval')
    image_emb = image_embeddings(load, data, mode, batch_size, workers, work_dir or cache_dir, progress)
    t2 = time.perf_counter()
    r = retrieval_recall(text_emb, image_emb, text_image, (1, 5, 10))
    out = {'dataset': dataset, 'mode': mode, 'images': len(images), 'captions': len(texts)}
    for k in (1, 5, 10):
        out[f'image_to_text_R@{k}'] = 100 * r[f'text_retrieval_recall@{k}']
        out[f'text_to_image_R@{k}'] = 100 * r[f'image_retrieval_recall@{k}']
    out.update(text_s=t1 - t0, image_s=t2 - t1, images_per_s=len(images) / max(t2 - t1, 1e-9))
    return out
