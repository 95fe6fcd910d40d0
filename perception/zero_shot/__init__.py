"""Zero-shot classification and retrieval with InternVL-C / InternVL-G (docs/zero_shot.md): the release's
tokenizer, the classifier from class names and templates, the shipped prompt files, the datasets in
their shipped layouts, text-embedding caches keyed by everything they depend on, and the phased
evaluation."""
from .cache import TextEmbeddingCache
from .classifier import encode_texts, zero_shot_classifier, zero_shot_logits
from .datasets import build_transform, classification_data, clean_caption, retrieval_data
from .evaluate import run_classification, run_retrieval
from .metrics import mean_per_class_recall, retrieval_recall, topk_accuracy
from .prompts import imagenet_classnames, imagenet_templates, imagenet_wnids, read_classnames, read_templates
from .tokenizer import InternVLTokenizer, load_internvl_tokenizer

__all__ = ['TextEmbeddingCache', 'encode_texts', 'zero_shot_classifier', 'zero_shot_logits', 'build_transform',
           'classification_data', 'clean_caption', 'retrieval_data', 'run_classification', 'run_retrieval',
           'mean_per_class_recall', 'retrieval_recall', 'topk_accuracy', 'imagenet_classnames', 'imagenet_templates',
           'imagenet_wnids', 'read_classnames', 'read_templates', 'InternVLTokenizer', 'load_internvl_tokenizer']
