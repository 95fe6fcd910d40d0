"""Reading a config: ``load_config`` (one-line errors naming the file) and ``ConfigError``."""
import os.path as osp

from mmengine.config import Config

from ..common.errors import InputError


class ConfigError(InputError, ValueError):
    """A config value that would fail deep inside a build, or be ignored: the message names its path."""


def load_config(config) -> Config:
    """``Config.fromfile`` with one-line errors naming the file: missing, not a ``.py`` / ``.json`` /
    ``.yaml`` config, or one that does not parse (file and line). A ``Config`` is returned as it is."""
    if isinstance(config, Config):
        return config
    path = str(config)
    if not osp.isfile(path):
        raise ConfigError(f'config not found: {path}' + (' (a folder: give the .py file)' if osp.isdir(path) else ''))
    if osp.splitext(path)[1] not in ('.py', '.json', '.yaml', '.yml'):
        raise ConfigError(f'{path}: not a config file (expected .py, .json or .yaml)')
    try:
        return Config.fromfile(path)
    except SyntaxError as e:
        where = e.filename if e.filename and not e.filename.startswith('<') else path
        raise ConfigError(f'{where}:{e.lineno}: {e.msg} (the config does not parse)') from e
    except (KeyError, NameError, ImportError, FileNotFoundError, TypeError, AttributeError) as e:
        raise ConfigError(f'{path}: cannot be read as a config: {type(e).__name__}: {e}') from e


def scope_of(cfg) -> str:
    """The OpenMMLab library a config builds with: its ``default_scope``, mmseg when it names none."""
    return cfg.get('default_scope') or 'mmseg'
