"""The project's base errors: bad input, and what this machine lacks."""


class InputError(Exception):
    """Bad input (a file, a config key, a value): the CLI prints the message as one line
    (``perception.common.cli.run_main``). The project's error classes (``CheckpointError``,
    ``ConfigError``, ``WorkDirError``, ``DeployError``, ``ExportError``, ``CacheMismatchError``,
    ``UnavailableError``) derive from it."""


class UnavailableError(InputError, RuntimeError):
    """What this machine lacks for what was asked (an attention kernel, a compiler, an optional
    package), and what to do: install it, or ask for something that runs here. Reported like bad input,
    in one line (exit 2). The plain-PyTorch layers raise their own ``BackendUnavailableError`` (they
    import nothing of ours); ``perception.models.InternViT`` reports it as this class."""
