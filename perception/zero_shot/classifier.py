"""Text embeddings in batches, and the zero-shot classifier built from them as the release builds it
(``clip_benchmark/metrics/zeroshot_classification.py``: for each class, the templates filled with its
name, each embedding normalised, their mean normalised again)."""
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from .prompts import check_classnames, check_templates


def encode_texts(model, tokenizer: Callable, texts: Sequence[str], batch_size: int = 64, device=None,
                 desc: str = 'texts', progress: bool = True) -> torch.Tensor:
    """``[len(texts), dim]`` float32 unit vectors on the CPU: ``model.encode_text(tokenizer(batch))``,
    normalised. Texts are independent rows (causal attention, padding masked, the embedding read at the
    last real token), so neither batching nor dropping the columns that are padding in every row of a
    batch changes a row; the latter runs a prompt of 20 tokens at a quarter of the 80-token cost."""
    from tqdm import tqdm
    if batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    out = []
    with torch.inference_mode(), tqdm(total=len(texts), desc=desc, unit='text', disable=not progress) as bar:
        for i in range(0, len(texts), batch_size):
            ids = tokenizer(list(texts[i:i + batch_size]))
            ids = ids[:, :int(torch.nonzero((ids != 0).any(0)).max()) + 1]
            if device is not None:
                ids = ids.to(device)
            out.append(F.normalize(model.encode_text(ids).float(), dim=-1).cpu())
            bar.update(len(ids))
    if not out:
        raise ValueError('no texts to encode')
    return torch.cat(out)


def class_vectors(prompt_embeddings: torch.Tensor) -> torch.Tensor:
    """``[C, T, dim]`` unit prompt embeddings -> ``[C, dim]``: each class's mean, normalised again."""
    mean = prompt_embeddings.mean(dim=1)
    return mean / mean.norm(dim=-1, keepdim=True)


def zero_shot_classifier(model, tokenizer: Callable, classnames: Sequence[str], templates: Sequence[str],
                         batch_size: int = 64, device=None, progress: bool = True,
                         allow_duplicates: bool = False) -> torch.Tensor:
    """``[num_classes, dim]`` float32: row ``c`` the renormalised mean of the normalised embeddings of
    ``template.format(c=classnames[c])`` over ``templates``. ``model`` needs only ``encode_text(input_ids)``;
    ``tokenizer`` maps a list of strings to ids (:func:`~perception.zero_shot.tokenizer.load_internvl_tokenizer`).
    Logits are then ``100 * normalize(image_embedding) @ classifier.T``, as the release computes them.
    Duplicated names or templates are refused unless ``allow_duplicates`` (the release's own lists have some)."""
    classnames = check_classnames(list(classnames), 'classnames', allow_duplicates)
    templates = check_templates(list(templates), 'templates', allow_duplicates)
    prompts = [t.format(c=c) for c in classnames for t in templates]
    emb = encode_texts(model, tokenizer, prompts, batch_size, device,
                       desc=f'{len(classnames)} classes x {len(templates)} templates', progress=progress)
    return class_vectors(emb.view(len(classnames), len(templates), -1))


def zero_shot_logits(image_embeddings: torch.Tensor, classifier: torch.Tensor, scale: Optional[float] = 100.):
    """The release's logits: ``scale * normalize(image_embeddings) @ classifier.T`` (the benchmark's fixed 100,
    not the model's ``logit_scale``)."""
    return scale * F.normalize(image_embeddings.float(), dim=-1) @ classifier.float().T
