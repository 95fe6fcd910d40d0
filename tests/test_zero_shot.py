"""Zero-shot classification and retrieval (perception.zero_shot, tools/zero_shot.py) against independent
formulas: the tokenizer against sentencepiece on a model trained here with the release's special ids,
the classifier, metrics, preprocessing and caption cleaning against plain re-computations, the caches
against every input they depend on, and a tiny end-to-end run of ``tools/zero_shot.py classify`` on a
generated ImageNet-layout folder with random weights written in the released layout, checked against the
release's formulas (``benchmarks/reference_internvl.py``)."""
import io
import json
import os
import random

import numpy as np
import pytest
import torch
from PIL import Image

import perception
from perception.zero_shot import (TextEmbeddingCache, build_transform, classification_data, clean_caption,
                                  imagenet_classnames, imagenet_templates, imagenet_wnids, mean_per_class_recall,
                                  read_classnames, read_templates, retrieval_data, retrieval_recall, topk_accuracy,
                                  zero_shot_classifier)
from perception.zero_shot import cache as cache_mod
from perception.zero_shot.cache import CacheMismatchError
from perception.zero_shot.datasets import DatasetLayoutError
from perception.zero_shot.prompts import LANGUAGES, PromptError
from perception.zero_shot.tokenizer import TokenizerError

WORDS = ['photo', 'tench', 'goldfish', 'shark', 'bird', 'crane', 'missile', 'sketch', 'drawing', 'origami', 'cat',
         'dog', 'a', 'the', 'of', 'summarize:', 'bad', 'many', 'sculpture']
PAD_PIECE = '[PAD]'


def train_sentencepiece(path, seed=0, **special):
    """A small BPE model with the release's layout: <unk> 0, <s> 1, </s> 2, byte fallback, LLaMA's
    normaliser (a dummy prefix, whitespace kept), and a '[PAD]' piece that is an ordinary token (49953 in
    the release)."""
    import sentencepiece as spm
    rng = random.Random(seed)
    lines = [' '.join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(2000)]
    buf = io.BytesIO()
    ids = dict(unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    ids.update(special)
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, vocab_size=360, model_type='bpe',
                                   byte_fallback=True, user_defined_symbols=[PAD_PIECE], character_coverage=1.0,
                                   minloglevel=2, remove_extra_whitespaces=False, add_dummy_prefix=True,
                                   **ids)
    path.write_bytes(buf.getvalue())
    return path


@pytest.fixture(scope='module')
def sp_model(tmp_path_factory):
    import sentencepiece as spm
    d = tmp_path_factory.mktemp('tok')
    f = train_sentencepiece(d / 'tokenizer.model')
    return d, spm.SentencePieceProcessor(model_file=str(f))


def release_ids(sp, text, length=80):
    """The release's framing written out: <s>, the pieces of 'summarize:' + text (at most 78), </s>, zeros."""
    pieces = sp.encode('summarize:' + text)[:length - 2]
    ids = [1] + pieces + [2]
    return ids + [0] * (length - len(ids))


# ----------------------------------------------------------------------------- tokenizer
TEXTS = ['a photo of a tench.', 'a bad photo of the missile', 'the origami crane', '丁鲷的照片。', ' leading space',
         'trailing space ', 'x']


def test_tokenizer_gives_sentencepiece_ids_with_the_release_framing(sp_model):
    d, sp = sp_model
    for where in (d, d / 'tokenizer.model'):  # the folder or the file
        tok = perception.load_internvl_tokenizer(str(where))
        ids = tok(TEXTS)
        assert ids.dtype == torch.long and ids.shape == (len(TEXTS), 80)
        assert ids.tolist() == [release_ids(sp, t) for t in TEXTS]
    for row, t in zip(ids.tolist(), TEXTS):
        n = row.index(2)
        assert sp.decode(row[1:n]) == 'summarize:' + t  # the pieces are the text's, prefix without a space


def test_padding_is_id_0_never_the_vocabulary_pad_piece(sp_model):
    d, sp = sp_model
    pad_piece = sp.piece_to_id(PAD_PIECE)
    assert pad_piece not in (0, sp.unk_id())  # an ordinary token, as 49953 is in the release
    ids = perception.load_internvl_tokenizer(d)(TEXTS)
    assert not (ids == pad_piece).any()
    lengths = torch.tensor([len(sp.encode('summarize:' + t)) + 2 for t in TEXTS])
    assert torch.equal((ids > 0).sum(1), lengths)  # the model's mask: every real token, no padding
    assert torch.equal(ids[torch.arange(len(TEXTS)), lengths - 1], torch.full((len(TEXTS),), 2))
    assert (ids[torch.arange(80) >= lengths[:, None]] == 0).all()  # right padding


def test_long_texts_keep_bos_and_eos_and_the_first_is_announced(sp_model, monkeypatch):
    import mmengine.logging
    d, sp = sp_model
    said = []
    monkeypatch.setattr(mmengine.logging, 'print_log', lambda msg, **kw: said.append(msg))
    long1, long2 = ' '.join(['goldfish shark'] * 60), ' '.join(['sculpture'] * 100)
    assert len(sp.encode('summarize:' + long1)) > 78
    tok = perception.load_internvl_tokenizer(d)
    ids = tok(['a cat', long1, long2])
    assert ids.tolist() == [release_ids(sp, t) for t in ('a cat', long1, long2)]
    assert ids[1, 0] == 1 and ids[1, 79] == 2 and (ids[1:] > 0).all()
    assert len(said) == 1 and 'truncated to 80' in said[0] and 'goldfish' in said[0]


def test_truncation_starts_at_79_pieces(sp_model, monkeypatch):
    import mmengine.logging
    d, sp = sp_model
    said = []
    monkeypatch.setattr(mmengine.logging, 'print_log', lambda msg, **kw: said.append(msg))
    fits, over = 'x' * 76, 'x' * 77  # 'x' is no piece of the trained vocabulary: one byte piece each
    assert len(sp.encode('summarize:' + fits)) == 78 and len(sp.encode('summarize:' + over)) == 79
    tok = perception.load_internvl_tokenizer(d)
    ids = tok([fits])
    assert not said and ids[0, 79] == 2 and ids.tolist() == [release_ids(sp, fits)]
    ids = tok([over])
    assert len(said) == 1 and ids[0, 79] == 2 and ids[0, 1:79].tolist() == sp.encode('summarize:' + over)[:78]


def test_tokenizer_refuses_other_files_and_texts_it_cannot_reproduce(sp_model, tmp_path):
    d, _ = sp_model
    with pytest.raises(TokenizerError, match='no tokenizer.model'):
        perception.load_internvl_tokenizer(tmp_path)
    (tmp_path / 'junk.model').write_bytes(b'not a model')
    with pytest.raises(TokenizerError, match='not a sentencepiece model'):
        perception.load_internvl_tokenizer(tmp_path / 'junk.model')
    other = train_sentencepiece(tmp_path / 'other.model', unk_id=2, bos_id=0, eos_id=1)
    with pytest.raises(TokenizerError, match="not InternVL's tokenizer"):
        perception.load_internvl_tokenizer(other)
    with pytest.raises(TokenizerError, match='</s>'):
        perception.load_internvl_tokenizer(d)(['a photo </s> of'])


# ----------------------------------------------------------------------------- classifier
class StandIn(torch.nn.Module):
    """A text encoder with a known formula: a position-weighted sum of id embeddings over the non-pad ids."""

    def __init__(self, vocab=360, dim=8, seed=0):
        super().__init__()
        self.table = torch.randn(vocab, dim, generator=torch.Generator().manual_seed(seed))
        self.calls = 0

    def encode_text(self, input_ids):
        self.calls += 1
        w = (input_ids > 0).float() * torch.arange(1, input_ids.shape[1] + 1)
        return 3.0 * (w[..., None] * self.table[input_ids]).sum(1)


def standin_formula(model, sp, text):
    ids = [1] + sp.encode('summarize:' + text) + [2]
    return 3.0 * sum((i + 1) * model.table[t] for i, t in enumerate(ids))


def test_classifier_rows_are_the_renormalised_mean_of_normalised_template_embeddings(sp_model):
    d, sp = sp_model
    model, tok = StandIn(), perception.load_internvl_tokenizer(d)
    names, templates = ['tench', 'great white shark', 'crane'], ['a photo of a {c}.', 'a sketch of the {c}', '{c}']
    want = []
    for c in names:
        e = torch.stack([standin_formula(model, sp, t.format(c=c)) for t in templates])
        m = (e / e.norm(dim=1, keepdim=True)).mean(0)
        want.append(m / m.norm())
    for bs in (1, 4, 64):
        got = perception.zero_shot_classifier(model, tok, names, templates, batch_size=bs, progress=False)
        assert got.shape == (3, 8)
        torch.testing.assert_close(got, torch.stack(want), rtol=1e-5, atol=1e-6)
    assert model.calls == 9 + 3 + 1  # batched: ceil(9 / bs) calls


def test_classifier_refuses_bad_names_and_templates(sp_model):
    d, _ = sp_model
    tok = perception.load_internvl_tokenizer(d)
    with pytest.raises(PromptError, match="'cat' appears on lines"):
        zero_shot_classifier(StandIn(), tok, ['cat', 'dog', 'cat'], ['{c}'])
    with pytest.raises(PromptError, match='has no {c}'):
        zero_shot_classifier(StandIn(), tok, ['cat'], ['a photo of {c}', 'a photo'])


# ----------------------------------------------------------------------------- shipped data and files
def test_shipped_prompts_are_the_releases():
    en, t = imagenet_classnames('en'), imagenet_templates('en')
    assert len(en) == 1000 and len(t) == 80 and all('{c}' in x for x in t)
    assert en[:3] == ['tench', 'goldfish', 'great white shark'] and en[-1] == 'toilet paper'
    assert en[134] == 'crane bird' and en[517] == 'construction crane'  # OpenAI's disambiguations
    assert t[0] == 'a bad photo of a {c}.' and t[-1] == 'a tattoo of the {c}.' and len(set(t)) == 80
    wnids, a, r = imagenet_wnids(), imagenet_wnids('imagenet-a'), imagenet_wnids('imagenet-r')
    assert len(wnids) == len(set(wnids)) == 1000 and wnids == sorted(wnids)
    for sub in (a, r):
        assert len(sub) == len(set(sub)) == 200 and set(sub) <= set(wnids) and sub == sorted(sub)
    assert a[0] == 'n01498041' and r[0] == 'n01443537' and len(set(a) & set(r)) < 200
    sub_names = imagenet_classnames('en', 'imagenet-a')
    assert sub_names == [en[wnids.index(w)] for w in a]
    for lang in LANGUAGES:
        names = imagenet_classnames(lang)
        assert len(names) == 1000 and all(names) and all('{c}' in x for x in imagenet_templates(lang))
    assert imagenet_classnames('zh')[0] == '丁鲷'
    assert any(n != n.strip() for n in imagenet_classnames('ar'))  # kept verbatim, as the release uses them


def test_shipped_duplicates_are_kept_and_announced_once(monkeypatch):
    import mmengine.logging
    from perception.zero_shot import prompts
    monkeypatch.setattr(prompts, '_ANNOUNCED', set())
    said = []
    monkeypatch.setattr(mmengine.logging, 'print_log', lambda msg, **kw: said.append(msg))
    en = imagenet_classnames('en')
    assert en[657] == en[744] == 'missile' and en[836] == en[837] == 'sunglasses'
    assert imagenet_classnames('en') == en
    assert len(said) == 1 and "'missile' (lines [658, 745])" in said[0]
    zh = imagenet_templates('zh')
    assert len(zh) == 80 and len(set(zh)) == 78 and 'count twice' in said[1]


@pytest.mark.parametrize('text, reader, pattern', [
    ('cat\ndog\ncat\n', read_classnames, r"names.txt: class name 'cat' appears on lines \[1, 3\]"),
    ('cat\n\ndog\n', read_classnames, r'names.txt:2: empty line'),
    ('cat\n   \n', read_classnames, r'names.txt:2: empty line'),
    ('', read_classnames, r'empty class name file'),
    ('a photo of {c}\na photo\n', read_templates, r"names.txt:2: template 'a photo' has no \{c\}"),
    ('a {c} of {0}\n', read_templates, r'names.txt:1: .* not a format string'),
    ('a {c}\na {c}\n', read_templates, r'appears on lines \[1, 2\]'),
])
def test_bad_name_and_template_files_get_one_line(tmp_path, text, reader, pattern):
    f = tmp_path / 'names.txt'
    f.write_text(text, encoding='utf-8')
    with pytest.raises(PromptError, match=pattern) as e:
        reader(f)
    assert '\n' not in str(e.value)


def test_name_files_keep_spaces_and_drop_only_line_breaks(tmp_path):
    f = tmp_path / 'n.txt'
    f.write_bytes(b' lead\r\ntrail \nplain')
    assert read_classnames(f) == [' lead', 'trail ', 'plain']


# ----------------------------------------------------------------------------- metrics, captions, preprocessing
def test_topk_and_mean_per_class_recall_match_plain_formulas():
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(200, 12, generator=g), torch.randint(0, 12, (200,), generator=g)
    order = np.argsort(-logits.numpy(), axis=1)
    for k, got in topk_accuracy(logits, target, (1, 5)).items():
        assert got == pytest.approx(np.mean([target[i].item() in order[i, :k] for i in range(200)]))
    pred = logits.argmax(1)
    per_class = [np.mean([pred[i] == c for i in range(200) if target[i] == c]) for c in set(target.tolist())]
    assert mean_per_class_recall(pred, target) == pytest.approx(np.mean(per_class))


def test_retrieval_recall_matches_ranks_counted_by_hand():
    g = torch.Generator().manual_seed(1)
    images, caps = 30, [random.Random(i).randint(1, 4) for i in range(30)]
    text_image = torch.tensor([i for i, n in enumerate(caps) for _ in range(n)])
    img = torch.nn.functional.normalize(torch.randn(images, 16, generator=g), dim=1)
    txt = torch.nn.functional.normalize(img[text_image] + 0.9 * torch.randn(len(text_image), 16, generator=g), dim=1)
    s = (txt @ img.T).numpy()
    got = retrieval_recall(txt, img, text_image, (1, 5, 10), chunk=7)
    for k in (1, 5, 10):
        # text -> image: the rank of the caption's own image among all images
        t2i = np.mean([(s[t] > s[t, text_image[t]]).sum() < k for t in range(len(s))])
        # image -> text: the best rank among the image's captions
        i2t = np.mean([min((s[:, i] > s[t, i]).sum() for t in np.where(text_image.numpy() == i)[0]) < k
                       for i in range(images)])
        assert got[f'image_retrieval_recall@{k}'] == pytest.approx(t2i)
        assert got[f'text_retrieval_recall@{k}'] == pytest.approx(i2t)
    assert 0 < got['text_retrieval_recall@1'] < 1 and 0 < got['image_retrieval_recall@1'] < 1


def test_captions_are_cleaned_as_the_release_does():
    assert clean_caption('A Dog; running!!  (fast) *near* the "lake".\n') == 'a dog running fast near the lake'
    assert clean_caption('Two men: one~with#hat') == 'two men one with hat'
    assert clean_caption('Keep, commas - and dashes?') == 'keep, commas - and dashes?'
    long = ' '.join(f'W{i}' for i in range(60))
    assert clean_caption(long) == ' '.join(f'w{i}' for i in range(50))


def _normalise(arr):
    x = np.asarray(arr, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return (x - np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]) / \
        np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]


def test_preprocessing_is_pil_bicubic_short_side_centre_crop_and_imagenet_stats():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (200, 301, 3), dtype=np.uint8))  # h 200, w 301
    got = build_transform('classification', 224)(img).numpy()
    w = int(224 * 301 / 200)  # the long side, truncated as torchvision computes it
    resized = np.asarray(img.resize((w, 224), Image.BICUBIC))
    left = int(round((w - 224) / 2.0))
    np.testing.assert_allclose(got, _normalise(resized[:, left:left + 224]), atol=1e-5)
    got = build_transform('retrieval', 224)(img.convert('L')).numpy()  # grey -> RGB, square resize
    want = _normalise(np.asarray(img.convert('L').convert('RGB').resize((224, 224), Image.BICUBIC)))
    np.testing.assert_allclose(got, want, atol=1e-5)


# ----------------------------------------------------------------------------- dataset layouts
def _jpeg(path, seed, size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)


def test_classification_layouts_give_labels_of_the_full_set(tmp_path):
    wnids, a = imagenet_wnids(), imagenet_wnids('imagenet-a')
    _jpeg(tmp_path / 'in1k' / 'val' / wnids[5] / 'x.JPEG', 0)
    _jpeg(tmp_path / 'in1k' / 'val' / wnids[999] / 'y.JPEG', 1)
    samples, names = classification_data('imagenet1k', str(tmp_path / 'in1k'))
    assert [s[1] for s in samples] == [5, 999] and len(names) == 1000
    _jpeg(tmp_path / 'a' / a[7] / 'z.jpg', 2)
    samples, names = classification_data('imagenet-a', str(tmp_path / 'a'))
    assert samples[0][1] == 7 and len(names) == 200 and names[7] == imagenet_classnames()[wnids.index(a[7])]
    _jpeg(tmp_path / 'v2' / 'ImageNetV2-matched-frequency' / '42' / 'q.jpeg', 3)
    assert classification_data('imagenet-v2', str(tmp_path / 'v2'))[0][0][1] == 42
    on = tmp_path / 'on'
    (on).mkdir()
    (on / 'folder_to_objectnet_label.json').write_text(json.dumps({'air_freshener': 'Air freshener',
                                                                   'alarm_clock': 'Alarm clock', 'zz': 'Not mapped'}))
    (on / 'objectnet_to_imagenet_1k.json').write_text(json.dumps({'Air freshener': 'x', 'Alarm clock': 'y'}))
    _jpeg(on / 'objectnet-1.0' / 'images' / 'alarm_clock' / 'p.png', 4)
    _jpeg(on / 'objectnet-1.0' / 'images' / 'zz' / 'p.png', 5)
    samples, names = classification_data('objectnet', str(on))
    assert names == ['air freshener', 'alarm clock'] and [s[1] for s in samples] == [1]
    _jpeg(tmp_path / 'bad' / 'val' / 'not_a_wnid' / 'x.jpg', 6)
    with pytest.raises(DatasetLayoutError, match="'not_a_wnid' is not a class of imagenet1k"):
        classification_data('imagenet1k', str(tmp_path / 'bad'))
    with pytest.raises(DatasetLayoutError, match='no such folder'):
        classification_data('imagenet-r', str(tmp_path / 'missing'))


def test_retrieval_annotations_in_the_three_shipped_formats(tmp_path):
    for i in range(3):
        _jpeg(tmp_path / 'Images' / f'{i}.jpg', i)
        _jpeg(tmp_path / 'val2014' / f'c{i}.jpg', i)
    karpathy = {'images': [{'filename': f'{i}.jpg', 'split': 'test' if i < 2 else 'train',
                            'sentences': [{'raw': f'A Dog {i}.'}, {'raw': 'Two (cats)!'}]} for i in range(3)]}
    (tmp_path / 'dataset_flickr30k.json').write_text(json.dumps(karpathy))
    imgs, caps = retrieval_data('flickr30k', str(tmp_path))
    assert [os.path.basename(p) for p in imgs] == ['0.jpg', '1.jpg'] and caps[1] == ['a dog 1', 'two cats']
    (tmp_path / 'flickr30k_test_karpathy.txt').write_text('image,caption\n0.jpg,A, b.\n1.jpg,C\n0.jpg,D\n')
    imgs, caps = retrieval_data('flickr30k', str(tmp_path))  # the release's file comes first
    assert len(imgs) == 2 and caps == [['a, b', 'd'], ['c']]
    coco = {'images': [{'id': 9, 'file_name': 'c1.jpg'}, {'id': 3, 'file_name': 'c0.jpg'}],
            'annotations': [{'image_id': 9, 'caption': 'X'}, {'image_id': 3, 'caption': 'Y'},
                            {'image_id': 9, 'caption': 'Z'}]}
    (tmp_path / 'coco_test_karpathy.json').write_text(json.dumps(coco))
    imgs, caps = retrieval_data('coco', str(tmp_path))
    assert [os.path.basename(p) for p in imgs] == ['c0.jpg', 'c1.jpg'] and caps == [['y'], ['x', 'z']]
    with pytest.raises(DatasetLayoutError, match='none of'):
        retrieval_data('coco', str(tmp_path / 'Images'))


# ----------------------------------------------------------------------------- caches
NAMES, TEMPLATES = ['tench', 'goldfish', 'crane'], ['a photo of a {c}.', 'a sketch of the {c}']


@pytest.fixture
def cache_inputs(sp_model, tmp_path):
    import shutil
    weights = tmp_path / 'weights'
    weights.mkdir()
    (weights / 'config.json').write_text('{}')
    (weights / 'model-00001-of-00001.safetensors').write_bytes(bytes(range(256)) * 4)
    tok = tmp_path / 'tokenizer.model'
    shutil.copy(sp_model[0] / 'tokenizer.model', tok)
    return weights, tok, tmp_path / 'cache'


def _get(cache, built, names=NAMES, templates=TEMPLATES):
    def build():
        built.append(1)
        return torch.randn(len(names), 4)
    return cache.get('classifier', 'in1k', {'classnames': names, 'templates': templates}, build)


def test_text_cache_is_reused_only_when_weights_tokenizer_texts_and_dtype_all_match(cache_inputs, monkeypatch):
    import mmengine.logging
    weights, tok, root = cache_inputs
    said, built = [], []
    monkeypatch.setattr(mmengine.logging, 'print_log', lambda msg, **kw: said.append(msg))

    def fresh(dtype='bf16'):  # a new run: nothing remembered in memory
        return TextEmbeddingCache(str(root), str(weights), str(tok), dtype)
    first = _get(fresh(), built)
    assert len(built) == 1 and torch.equal(_get(fresh(), built), first) and len(built) == 1
    assert 'read from the cache' in said[-1]
    _get(fresh(), built, templates=TEMPLATES + ['art of the {c}'])
    assert len(built) == 2 and 'texts.templates' in said[-2]  # names what differs from the cache it did not use
    _get(fresh(), built, names=['tench', 'goldfish', 'crane bird'])
    assert len(built) == 3 and 'texts.classnames' in said[-2]
    _get(fresh('fp32'), built)
    assert len(built) == 4 and 'dtype' in said[-2]
    with open(tok, 'ab') as f:  # another tokenizer file at the same path
        f.write(b'\0')
    _get(fresh(), built)
    assert len(built) == 5 and 'tokenizer' in said[-2]
    shard = weights / 'model-00001-of-00001.safetensors'
    st = os.stat(shard)
    shard.write_bytes(bytes(range(255, -1, -1)) * 4)  # same name and size, mtime set back: new content
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
    _get(fresh(), built)
    assert len(built) == 6 and 'weights' in said[-2]
    assert torch.equal(_get(fresh(), built), _get(fresh(), built)) and len(built) == 6


def test_file_digests_are_remembered_only_for_the_unchanged_file(cache_inputs, monkeypatch):
    weights, tok, root = cache_inputs
    hashed = []
    real = cache_mod.sha256_file
    monkeypatch.setattr(cache_mod, 'sha256_file', lambda p: hashed.append(p) or real(p))
    TextEmbeddingCache(str(root), str(weights), str(tok), 'bf16').base_manifest()
    assert len(hashed) == 3  # config.json, the shard, the tokenizer
    TextEmbeddingCache(str(root), str(weights), str(tok), 'bf16').base_manifest()
    assert len(hashed) == 3
    os.utime(tok)  # touched: its stat changed, so it is read again (and its digest is the same)
    m = TextEmbeddingCache(str(root), str(weights), str(tok), 'bf16').base_manifest()
    assert len(hashed) == 4 and m['tokenizer'] == real(tok)


def test_a_cache_file_that_does_not_hold_what_its_name_says_is_refused(cache_inputs):
    import shutil
    weights, tok, root = cache_inputs
    cache = TextEmbeddingCache(str(root), str(weights), str(tok), 'bf16')
    built = []
    _get(cache, built)
    _get(cache, built, names=['cat', 'dog', 'bird'])
    a = cache.path_for(cache.manifest('classifier', {'classnames': NAMES, 'templates': TEMPLATES}))
    b = cache.path_for(cache.manifest('classifier', {'classnames': ['cat', 'dog', 'bird'], 'templates': TEMPLATES}))
    shutil.copy(b, a)
    with pytest.raises(CacheMismatchError, match='does not hold what its name says'):
        _get(cache, built)


# ----------------------------------------------------------------------------- end to end, random weights
@pytest.fixture(scope='module')
def tiny_release(tmp_path_factory, sp_model):
    import shutil
    from test_internvl_clip import CFG, hf_config, random_release_state, write_hf_folder
    cfg = dict(CFG, vocab_size=sp_model[1].get_piece_size())
    sd = random_release_state(cfg, seed=3)
    root = tmp_path_factory.mktemp('zs')
    d = write_hf_folder(root / 'InternVL-tiny', sd, hf_config(cfg))
    shutil.copy(sp_model[0] / 'tokenizer.model', d / 'tokenizer.model')
    wnids = imagenet_wnids()
    for k, c in enumerate((0, 1, 2, 500)):
        for j, size in enumerate(((61, 45), (50, 70))):
            _jpeg(root / 'in1k' / 'val' / wnids[c] / f'{j}.JPEG', 10 * k + j, size)
    (root / 'templates.txt').write_text('a photo of a {c}.\nart of the {c}\n')
    return sd, cfg, d, root


@pytest.fixture(scope='module')
def release_classifier(tiny_release, sp_model):
    """The release's classifier from its formulas: the prompts' ids, text embeddings, normalised means.
    Ids are cut after the longest prompt: padding is masked, so the last real token does not see it."""
    from benchmarks import reference_internvl as ref
    sd, cfg, _, _ = tiny_release
    names, templates = imagenet_classnames(), ['a photo of a {c}.', 'art of the {c}']
    ids = torch.tensor([release_ids(sp_model[1], t.format(c=c)) for c in names for t in templates])
    ids = ids[:, :int((ids > 0).sum(1).max())]
    with torch.no_grad():
        e = torch.cat([ref.encode_text(sd, ids[i:i + 500], cfg) for i in range(0, len(ids), 500)])
    e = (e / e.norm(dim=1, keepdim=True)).view(1000, 2, -1).mean(1)
    return e / e.norm(dim=1, keepdim=True)


def _release_result(sd, cfg, classifier, root, mode):
    """The release's top-k from its formulas: preprocessing, image embeddings, 100 x cosine logits."""
    from benchmarks import reference_internvl as ref
    size, px, target = cfg['vision']['img_size'], [], []
    wnids = imagenet_wnids()
    for folder in sorted((root / 'in1k' / 'val').iterdir()):
        for f in sorted(folder.iterdir()):
            img = Image.open(f).convert('RGB')
            w, h = img.size
            nw, nh = (size, int(size * h / w)) if w < h else (int(size * w / h), size)
            img = np.asarray(img.resize((nw, nh), Image.BICUBIC))
            top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
            px.append(torch.from_numpy(_normalise(img[top:top + size, left:left + size])))
            target.append(wnids.index(folder.name))
    with torch.no_grad():
        img_emb = ref.encode_image(sd, torch.stack(px), mode, cfg)
    logits = 100 * (img_emb / img_emb.norm(dim=1, keepdim=True)) @ classifier.T
    order = np.argsort(-logits.numpy(), axis=1)
    return {k: 100 * np.mean([target[i] in order[i, :k] for i in range(len(target))]) for k in (1, 5)}, logits


@pytest.mark.slow  # 2000 prompts through the reference formulas and the tool: ~40 s on 2 busy cores
@pytest.mark.parametrize('mode', ['InternVL-C', 'InternVL-G'])
def test_tool_classify_on_an_imagenet_folder_gives_the_releases_numbers(tiny_release, release_classifier, mode,
                                                                        capsys):
    from conftest import load_tool
    sd, cfg, d, root = tiny_release
    want, logits = _release_result(sd, cfg, release_classifier, root, mode)
    top2 = logits.topk(2, dim=1).values
    assert ((top2[:, 0] - top2[:, 1]) > 1e-3).all()  # no near-ties: the comparison below is meaningful
    out = root / f'{mode}.json'
    tool = load_tool(os.path.join(os.path.dirname(__file__), '..', 'tools', 'zero_shot.py'))
    assert tool.main(['classify', '--model', str(d), '--dataset', 'imagenet1k', '--data-root', str(root / 'in1k'),
                      '--mode', mode, '--templates', str(root / 'templates.txt'), '--dtype', 'fp32',
                      '--cache-dir', str(root / 'cache'), '--workers', '0', '--batch-size', '3',
                      '--out', str(out)]) in (None, 0)
    res = json.loads(out.read_text())
    assert res['images'] == 8 and res['classes'] == 1000 and res['templates'] == 2
    assert res['top1'] == pytest.approx(want[1]) and res['top5'] == pytest.approx(want[5])
    assert 'top-1' in capsys.readouterr().out
    assert len(list((root / 'cache').glob('classifier-*.pt'))) == 1  # both modes share the text embeddings
    assert not list((root / 'cache').glob('vit_tokens_*'))  # InternVL-G's token file is removed


def test_g_phases_through_a_bf16_token_file_match_the_direct_path(tiny_release):
    from perception.zero_shot.datasets import ImageList
    from perception.zero_shot.evaluate import image_embeddings
    sd, cfg, d, root = tiny_release
    samples, _ = classification_data('imagenet1k', str(root / 'in1k'))
    loads = []

    def load(parts):
        loads.append(parts)
        return perception.load_internvl_clip(str(d), parts=parts, dtype='bf16')
    got = image_embeddings(load, ImageList(samples, 'classification', 42), 'InternVL-G', 8, 0, str(root),
                           progress=False)
    assert loads == [('vision',), ('queries',)]
    data = ImageList(samples, 'classification', 42)
    x = torch.stack([data[i][0] for i in range(len(data))])
    with torch.no_grad():
        want = perception.load_internvl_clip(str(d), mode='InternVL-G', dtype='bf16').encode_image(x, 'InternVL-G')
    torch.testing.assert_close(got, torch.nn.functional.normalize(want.float(), dim=-1), rtol=0, atol=1e-6)


def test_batched_text_embeddings_equal_the_80_token_rows(tiny_release, sp_model):
    from perception.zero_shot import encode_texts
    _, _, d, _ = tiny_release
    model = perception.load_internvl_clip(str(d), parts=('text',), dtype='fp32')
    tok = perception.load_internvl_tokenizer(d)
    texts = ['a photo of a tench.', 'a', 'the origami crane in a video game', '丁鲷']
    with torch.no_grad():
        want = torch.nn.functional.normalize(model.encode_text(tok(texts)), dim=-1)  # [4, 80] ids, as the release
    for bs in (1, 3):
        torch.testing.assert_close(encode_texts(model, tok, texts, bs, progress=False), want, rtol=1e-5, atol=1e-6)


def test_classification_runs_text_then_images_and_skips_the_text_tower_when_cached(tiny_release, tmp_path):
    from perception.zero_shot import run_classification
    _, _, d, root = tiny_release
    loads = []

    def load(parts):
        loads.append(parts)
        return perception.load_internvl_clip(str(d), parts=parts, dtype='fp32')
    a = imagenet_wnids('imagenet-a')
    for i, c in enumerate((0, 5, 199)):
        _jpeg(tmp_path / 'ina' / a[c] / 'x.jpg', 50 + i)
    kw = dict(templates=['{c}'], cache_dir=str(tmp_path / 'cache'), dtype='fp32', workers=0, load=load, progress=False)
    first = run_classification(str(d), 'imagenet-a', str(tmp_path / 'ina'), **kw)
    assert loads == [('text',), ('vision',)] and first['classes'] == 200 and first['images'] == 3
    again = run_classification(str(d), 'imagenet-a', str(tmp_path / 'ina'), **kw)
    assert loads[2:] == [('vision',)] and again['top1'] == first['top1'] and again['top5'] == first['top5']


def test_retrieval_gives_the_releases_recall(tiny_release, sp_model, tmp_path):
    from benchmarks import reference_internvl as ref
    from perception.zero_shot import run_retrieval
    sd, cfg, d, _ = tiny_release
    rng = random.Random(0)
    words = ['A dog', 'two cats', 'the shark!', 'a (crane)', 'origami: bird', 'photo of many sharks.']
    images = []
    for i in range(12):
        _jpeg(tmp_path / 'Images' / f'{i}.jpg', 100 + i, (50 + 3 * i, 60))
        images.append({'filename': f'{i}.jpg', 'split': 'test',
                       'sentences': [{'raw': ' '.join(rng.sample(words, 2))} for _ in range(1 + i % 3)]})
    (tmp_path / 'dataset_flickr30k.json').write_text(json.dumps({'images': images}))
    got = run_retrieval(str(d), 'flickr30k', str(tmp_path), dtype='fp32', workers=0, cache_dir=None, progress=False)
    caps = [clean_caption(s['raw']) for im in images for s in im['sentences']]
    owner = np.array([i for i, im in enumerate(images) for _ in im['sentences']])
    with torch.no_grad():
        t = ref.encode_text(sd, torch.tensor([release_ids(sp_model[1], c) for c in caps]), cfg)
        px = torch.stack([torch.from_numpy(_normalise(np.asarray(Image.open(tmp_path / 'Images' / im['filename'])
                                                                 .convert('RGB').resize((42, 42), Image.BICUBIC))))
                          for im in images])
        v = ref.encode_image(sd, px, 'InternVL-C', cfg)
    s = ((t / t.norm(dim=1, keepdim=True)) @ (v / v.norm(dim=1, keepdim=True)).T).numpy()
    for k in (1, 5, 10):
        t2i = 100 * np.mean([(s[j] > s[j, owner[j]]).sum() < k for j in range(len(caps))])
        i2t = 100 * np.mean([min((s[:, i] > s[j, i]).sum() for j in np.where(owner == i)[0]) < k for i in range(12)])
        assert got[f'text_to_image_R@{k}'] == pytest.approx(t2i) and got[f'image_to_text_R@{k}'] == pytest.approx(i2t)
    assert got['images'] == 12 and got['captions'] == len(caps)


def test_tool_refuses_an_existing_out_file_before_reading_the_model(tmp_path):
    """``--out`` never writes over a file: one line, exit 2, the file untouched, and the model (here a path
    that does not exist) not even looked at."""
    import subprocess
    import sys
    out = tmp_path / 'results.json'
    out.write_text('{"kept": true}')
    tool = os.path.join(os.path.dirname(__file__), '..', 'tools', 'zero_shot.py')
    proc = subprocess.run([sys.executable, tool, 'classify', '--model', str(tmp_path / 'no_such_model'),
                           '--dataset', 'imagenet1k', '--data-root', str(tmp_path / 'no_such_data'),
                           '--out', str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and f'--out {out}: exists' in lines[0]
    assert out.read_text() == '{"kept": true}'
