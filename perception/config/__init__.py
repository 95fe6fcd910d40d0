"""Config handling, one concern a file:

- ``loading``: ``load_config`` (one-line errors naming the file), ``ConfigError``;
- ``checks``: every key checked against the class it builds before anything is built, and
  ``check_weights_fit`` (a weights file to resume, load or evaluate fits the model);
- ``values``: every value checked (types, ranges, a run that would do nothing, class counts);
- ``environment``: what the config asks of this machine (kernels, compiler, packages);
- ``rewrites``: each change this project makes to a config, a named function, announced in the log;
- ``prepare``: ``prepare_config`` = load + checks + rewrites, for the Runner;
- ``build``: ``build_model`` (every model built outside the Runner) and ``build_runner``;
- ``arguments``: the tools' shared config flags (``--cfg-options``, kept as typed; ``--compile``).

The train / evaluate entry points over them are in ``perception.apis``."""
from .arguments import DictAction, add_compile_argument, compile_options, parse_option_value
from .build import build_model, build_runner, model_shapes
from .checks import check_model_keys, check_runner_keys, check_weights_fit
from .environment import check_environment
from .loading import ConfigError, load_config
from .prepare import prepare_config
from .rewrites import enable_auto_scale_lr, strip_pretrained
from .values import check_values

__all__ = ['ConfigError', 'DictAction', 'add_compile_argument', 'build_model', 'build_runner', 'check_environment',
           'check_model_keys', 'check_runner_keys', 'check_values', 'check_weights_fit', 'compile_options',
           'enable_auto_scale_lr', 'load_config', 'model_shapes', 'parse_option_value', 'prepare_config',
           'strip_pretrained']
