"""The InternVL text tokenizer: the release's ids, without transformers' remote-code path.

The release (``clip_benchmark/models/internvl_huggingface/__init__.py``, ``InternVLTokenizer``) runs
transformers' slow ``LlamaTokenizer`` on ``tokenizer.model`` with ``pad_token = ' '`` and
``add_eos_token = True``, and calls it on ``'summarize:' + text`` with ``max_length=80``,
``truncation=True``, ``padding='max_length'``. With the legacy sentencepiece behaviour that slow
tokenizer is, for a text without the literal special tokens, exactly ``sp.encode(text)`` framed as
``[<s>] + pieces[:78] + [</s>]`` and right-padded; the pad token ``' '`` is no piece of the vocabulary,
so it maps to the unknown id 0, which is what the model's mask (``ids > 0``) expects. The vocabulary's
own ``[PAD]`` piece (49953 in the release) is an ordinary token: padding with it would silently change
every text embedding, so it is never used here.

sentencepiece is called directly: transformers 5 has no slow, legacy ``LlamaTokenizer`` any more, and
the framing is three lines.
"""
import os.path as osp
from typing import List, Sequence, Union

PREFIX = 'summarize:'
MAX_LENGTH = 80
BOS_ID, EOS_ID, PAD_ID = 1, 2, 0
#: strings the slow tokenizer splits out as special tokens (with whitespace rules of its own): refused
SPECIAL_STRINGS = ('<s>', '</s>', '<unk>')
TOKENIZER_FILE = 'tokenizer.model'


class TokenizerError(ValueError):
    """A tokenizer file that is not the release's kind, or a text it cannot encode as the release does."""


def tokenizer_file(path) -> str:
    """``path`` itself (a ``.model`` file) or ``path/tokenizer.model``; one line when neither exists."""
    path = str(path)
    if osp.isdir(path):
        f = osp.join(path, TOKENIZER_FILE)
        if not osp.isfile(f):
            raise TokenizerError(f'{path}: no {TOKENIZER_FILE} in this folder (the release ships the sentencepiece '
                                 f'model beside config.json; pass the folder or the file)')
        return f
    if not osp.isfile(path):
        raise TokenizerError(f'{path}: no such tokenizer file or folder (expected the release\'s {TOKENIZER_FILE})')
    return path


class InternVLTokenizer:
    """A callable ``list[str] -> LongTensor [N, 80]`` giving the release's ids (see the module docstring).

    The first text longer than 78 pieces (80 with ``<s>`` and ``</s>``) is announced once; the release
    truncates it silently, and so do the following ones here."""

    def __init__(self, model_file: str):
        import sentencepiece as spm
        self.path = tokenizer_file(model_file)
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.Load(self.path)
        except (OSError, RuntimeError) as e:
            raise TokenizerError(f'{self.path}: not a sentencepiece model ({" ".join(str(e).split())})') from None
        ids = {name: self.sp.piece_to_id(name) for name in SPECIAL_STRINGS}
        want = {'<s>': BOS_ID, '</s>': EOS_ID, '<unk>': PAD_ID}
        if ids != want or self.sp.unk_id() != PAD_ID:
            raise TokenizerError(f'{self.path}: special ids {ids} (unk id {self.sp.unk_id()}), expected the '
                                 f"release's layout {want}: this is not InternVL's tokenizer")
        self.vocab_size = self.sp.get_piece_size()
        self.truncated = 0  # texts truncated so far (the first is announced)

    def encode(self, text: str) -> List[int]:
        """The ids of one text (prefix, ``<s>``, pieces, ``</s>``), before padding."""
        if not isinstance(text, str):
            raise TokenizerError(f'expected a str, got {type(text).__name__}: {text!r}')
        bad = [s for s in SPECIAL_STRINGS if s in text]
        if bad:
            raise TokenizerError(f'text {text!r} contains {bad}: the release\'s tokenizer turns these into special '
                                 'tokens with whitespace rules of its own, which is not reproduced; remove them')
        pieces = self.sp.encode(PREFIX + text)
        keep = MAX_LENGTH - 2
        if len(pieces) > keep:
            self.truncated += 1
            if self.truncated == 1:
                from mmengine.logging import print_log
                print_log(f'text of {len(pieces) + 2} tokens truncated to {MAX_LENGTH} as the release does '
                          f'(further truncations are not announced): {text[:120]!r}', logger='current')
            pieces = pieces[:keep]
        return [BOS_ID, *pieces, EOS_ID]

    def __call__(self, texts: Union[str, Sequence[str]]):
        import torch
        if isinstance(texts, str):
            texts = [texts]
        out = torch.full((len(texts), MAX_LENGTH), PAD_ID, dtype=torch.long)
        for i, t in enumerate(texts):
            ids = self.encode(t)
            out[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def __repr__(self):
        return f'InternVLTokenizer({self.path!r}, vocab {self.vocab_size})'


def load_internvl_tokenizer(path) -> InternVLTokenizer:
    """The release's tokenizer from ``path``: a folder holding ``tokenizer.model`` (the
    ``InternVL-14B-224px`` folder) or the ``.model`` file itself."""
    return InternVLTokenizer(path)
