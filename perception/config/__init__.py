"""Config handling, one concern a file:

- ``loading``: ``load_config`` (one-line errors naming the file), ``ConfigError``;
- ``checks``: every key checked against the class it builds before anything is built;
- ``rewrites``: each change this project makes to a config, a named function, announced in the log;
- ``prepare``: ``prepare_config`` = load + checks + rewrites, for the Runner;
- ``build``: ``build_model`` (every model built outside the Runner) and ``build_runner``;
- ``arguments``: the tools' shared config flags (``--cfg-options``, ``--compile``).

The train / evaluate entry points over them are in ``perception.apis``."""
from .arguments import DictAction, add_compile_argument, compile_options
from .build import build_model, build_runner
from .checks import check_model_keys, check_runner_keys
from .loading import ConfigError, load_config
from .prepare import prepare_config
from .rewrites import enable_auto_scale_lr, strip_pretrained

__all__ = ['ConfigError', 'DictAction', 'add_compile_argument', 'build_model', 'build_runner', 'check_model_keys',
           'check_runner_keys', 'compile_options', 'enable_auto_scale_lr', 'load_config', 'prepare_config',
           'strip_pretrained']
