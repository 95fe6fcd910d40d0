"""Command-line arguments the tools share that turn into config changes: ``--cfg-options`` and
``--compile`` / ``--no-compile``."""
from typing import Optional

from mmengine.config import DictAction as _MMDictAction


class DictAction(_MMDictAction):
    """mmengine's ``--cfg-options KEY=VALUE ...`` parser; a malformed item is an argparse error naming it
    (mmengine fails with ``not enough values to unpack``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        for kv in values:
            if '=' not in kv or not kv.split('=', 1)[0].strip():
                parser.error(f'{option_string}: expected KEY=VALUE, got {kv!r}')
        super().__call__(parser, namespace, values, option_string)


def add_compile_argument(parser):
    """``--compile [force]`` / ``--no-compile`` of the tools: ``model.backbone.compile_blocks`` (True, or
    'force': fail instead of running eagerly where the platform cannot compile; False: eager)."""
    g = parser.add_mutually_exclusive_group()
    g.add_argument('--compile', nargs='?', const=True, default=None, choices=[True, 'force'], metavar='force',
                   type=lambda v: 'force' if v == 'force' else v,
                   help="compile the backbone's blocks (one torch.compile of the block body shared by all "
                        "blocks); without a C++ compiler / triton it warns and runs eagerly, '--compile force' "
                        "fails instead. Default: on with CUDA (where it pays off), off on CPU")
    g.add_argument('--no-compile', dest='compile', action='store_const', const=False,
                   help='run the blocks eagerly, also on CUDA')


def compile_options(compile_blocks, cfg_options: Optional[dict] = None) -> Optional[dict]:
    """``cfg_options`` with ``model.backbone.compile_blocks`` set when ``--compile`` was given."""
    if compile_blocks is None:
        return cfg_options
    return dict(cfg_options or {}, **{'model.backbone.compile_blocks': compile_blocks})
