"""The project's base error for bad input."""


class InputError(Exception):
    """Bad input (a file, a config key, a value): the CLI prints the message as one line
    (``perception.common.cli.run_main``). The project's error classes (``CheckpointError``,
    ``ConfigError``, ``WorkDirError``, ``DeployError``, ``ExportError``, ``CacheMismatchError``)
    derive from it."""
