"""The release's zero-shot metrics (``clip_benchmark/metrics/zeroshot_{classification,retrieval}.py``):
top-k accuracy, mean per-class recall, and retrieval Recall@k as CLIP papers count it (a query scores
1 when at least one of its positives is among its top k)."""
from typing import Dict, Sequence

import torch


def topk_accuracy(logits: torch.Tensor, target: torch.Tensor, ks: Sequence[int] = (1, 5)) -> Dict[int, float]:
    """``{k: fraction of rows whose target is among the k largest logits}`` (``torch.topk``, as the release)."""
    k_max = min(max(ks), logits.shape[1])
    pred = logits.topk(k_max, dim=1).indices
    hit = pred == target.view(-1, 1)
    return {k: float(hit[:, :k].any(dim=1).float().mean()) if k <= logits.shape[1] else float('nan') for k in ks}


def mean_per_class_recall(pred: torch.Tensor, target: torch.Tensor) -> float:
    """sklearn's ``balanced_accuracy_score``: the mean over the classes present in ``target`` of their recall."""
    classes = target.unique()
    return float(torch.stack([(pred[target == c] == c).float().mean() for c in classes]).mean())


def retrieval_recall(text_emb: torch.Tensor, image_emb: torch.Tensor, text_image: torch.Tensor,
                     ks: Sequence[int] = (1, 5, 10), chunk: int = 4096) -> Dict[str, float]:
    """Recall@k both ways from unit embeddings; ``text_image[t]`` is the image of caption ``t``.

    ``image_retrieval_recall@k`` (text -> image): the fraction of captions whose image is among the k
    best-scoring images; ``text_retrieval_recall@k`` (image -> text): the fraction of images with at least
    one of their captions among the k best-scoring captions. Scores are ``text @ image.T`` in float32,
    computed in chunks of rows."""
    text_emb, image_emb, text_image = text_emb.float(), image_emb.float(), text_image.long()
    k_max = max(ks)
    if k_max > min(len(text_emb), len(image_emb)):
        raise ValueError(f'Recall@{k_max} needs at least {k_max} images and captions, got {len(image_emb)} images '
                         f'and {len(text_emb)} captions')
    t2i = []
    for s in range(0, len(text_emb), chunk):
        top = (text_emb[s:s + chunk] @ image_emb.T).topk(k_max, dim=1).indices
        t2i.append(top == text_image[s:s + chunk].view(-1, 1))
    t2i = torch.cat(t2i)
    i2t = []
    for s in range(0, len(image_emb), chunk):
        top = (image_emb[s:s + chunk] @ text_emb.T).topk(k_max, dim=1).indices
        i2t.append(text_image[top] == torch.arange(s, s + len(top)).view(-1, 1))
    i2t = torch.cat(i2t)
    out = {}
    for k in ks:
        out[f'image_retrieval_recall@{k}'] = float(t2i[:, :k].any(dim=1).float().mean())
        out[f'text_retrieval_recall@{k}'] = float(i2t[:, :k].any(dim=1).float().mean())
    return out
