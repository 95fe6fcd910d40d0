"""Zero-shot classification and retrieval with InternVL-C / InternVL-G, as the release evaluates them.

    python tools/zero_shot.py classify --model PATH --dataset imagenet1k --data-root DIR
        [--mode InternVL-C|InternVL-G] [--lang en|zh|ja|ar|it] [--templates FILE] [--tokenizer PATH]
        [--cache-dir DIR] [--dtype bf16|fp32|fp16] [--device cpu|cuda] [--batch-size N] [--limit N] [--out FILE]
    python tools/zero_shot.py retrieve --model PATH --dataset flickr30k|coco --data-root DIR [--annotations FILE] ...

PATH: the InternVL-14B-224px folder (InternVL-C or -G) or the stage-1 internvl_c_13b_224px.pth (InternVL-C;
pass --tokenizer, the release's tokenizer.model). Text embeddings are computed first and cached under
--cache-dir (keyed by the weights' and tokenizer's content, the texts and the dtype), the text tower is
freed, then the images run. See docs/zero_shot.md for the dataset layouts and the published numbers.
"""
import argparse
import json
import os.path as osp
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perception.common.cli import non_negative_int, positive_int, run_main, torch_device  # noqa: E402

CLASSIFY = ('imagenet1k', 'imagenet-v2', 'imagenet-a', 'imagenet-r', 'imagenet-sketch', 'objectnet')
RETRIEVE = ('flickr30k', 'coco')


def _common(p):
    p.add_argument('--model', required=True, help='InternVL-14B-224px folder or internvl_c_13b_224px.pth')
    p.add_argument('--data-root', required=True)
    p.add_argument('--mode', choices=('InternVL-C', 'InternVL-G'), default='InternVL-C')
    p.add_argument('--tokenizer', help="the release's tokenizer.model or its folder (default: --model's folder)")
    p.add_argument('--cache-dir', default='work_dirs/zero_shot_cache',
                   help="text-embedding cache (default %(default)s); '' for none")
    p.add_argument('--work-dir', help='where InternVL-G keeps the ViT tokens between phases (default --cache-dir)')
    p.add_argument('--dtype', choices=('bf16', 'fp32', 'fp16'), default='bf16')
    p.add_argument('--device', type=torch_device, default='cpu')
    p.add_argument('--batch-size', type=positive_int, default=32, help='images per batch')
    p.add_argument('--text-batch-size', type=positive_int, default=64, help='texts per batch')
    p.add_argument('--workers', type=non_negative_int, default=2, help='image-loading processes')
    p.add_argument('--limit', type=positive_int, help='evaluate only N images, evenly spaced (a smoke run)')
    p.add_argument('--out', help='also write the results to this JSON file (must not exist)')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='command', required=True)
    c = sub.add_parser('classify', help='zero-shot top-1 / top-5')
    c.add_argument('--dataset', choices=CLASSIFY, required=True)
    c.add_argument('--lang', choices=('en', 'zh', 'ja', 'ar', 'it'), default='en',
                   help="the release's class names and templates in this language (default en: OpenAI's)")
    c.add_argument('--templates', help='a template file (one per line, each with {c}) instead of the release\'s')
    _common(c)
    r = sub.add_parser('retrieve', help='Recall@1/5/10 image -> text and text -> image')
    r.add_argument('--dataset', choices=RETRIEVE, required=True)
    r.add_argument('--annotations', help="Karpathy's dataset_*.json or the release's test annotations "
                                         '(default: found in --data-root)')
    _common(r)
    args = p.parse_args(argv)
    if args.out and osp.exists(args.out):
        raise FileExistsError(f'--out {args.out}: exists; results are never written over another file')
    from mmengine.logging import MMLogger
    from perception.zero_shot import read_templates, run_classification, run_retrieval
    if not MMLogger.check_instance_created('perception'):
        MMLogger.get_instance('perception', log_level='INFO')
    kw = dict(tokenizer=args.tokenizer, cache_dir=args.cache_dir or None, dtype=args.dtype, device=args.device,
              batch_size=args.batch_size, text_batch_size=args.text_batch_size, workers=args.workers,
              limit=args.limit, work_dir=args.work_dir)
    if args.command == 'classify':
        templates = read_templates(args.templates) if args.templates else None
        res = run_classification(args.model, args.dataset, args.data_root, args.mode, args.lang, templates, **kw)
        print(f"{res['dataset']} ({res['lang']}, {res['mode']}): top-1 {res['top1']:.2f}, top-5 {res['top5']:.2f}, "
              f"mean per-class recall {res['mean_per_class_recall']:.2f} ({res['images']} images, {res['classes']} "
              f"classes x {res['templates']} templates)")
    else:
        res = run_retrieval(args.model, args.dataset, args.data_root, args.mode, args.annotations, **kw)
        print(f"{res['dataset']} ({res['mode']}, {res['images']} images, {res['captions']} captions): image->text R@1/5/10 "
              + ' / '.join(f"{res[f'image_to_text_R@{k}']:.2f}" for k in (1, 5, 10)) + '; text->image R@1/5/10 '
              + ' / '.join(f"{res[f'text_to_image_R@{k}']:.2f}" for k in (1, 5, 10)))
    print(f"text phase {res['text_s']:.1f} s, image phase {res['image_s']:.1f} s ({res['images_per_s']:.2f} images/s)")
    if args.out:
        from perception.common.files import atomic_write
        with atomic_write(args.out) as tmp:
            tmp.write_text(json.dumps(dict(res, model=args.model), indent=1))


if __name__ == '__main__':
    sys.exit(run_main(main))
