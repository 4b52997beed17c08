"""User-facing errors.

Every error a user can cause by what they type or by the files they give us derives from
:class:`UserError`. The command line prints its message as one paragraph and exits with a non-zero
status, without a traceback; the Python API lets it propagate like any exception.
"""


import signal


class UserError(Exception):
    """A problem with the user's input, explained in plain words (what, where, how to fix)."""

    exit_code = 2


class UnknownModelError(UserError, KeyError):
    """The model name is neither a plugin model nor a RecBole model."""

    def __str__(self):  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class DatasetNotFoundError(UserError, FileNotFoundError):
    """The dataset's atomic files are missing."""


class DataFormatError(UserError, ValueError):
    """An atomic or upstream data file is malformed."""


class MalformedLineError(DataFormatError):
    """A line of an input file could not be understood.

    Attributes ``path`` and ``line_no`` (1-based) say where, ``reason`` says what is wrong.
    """

    def __init__(self, path, line_no: int, reason: str, hint: str = ""):
        self.path = str(path)
        self.line_no = int(line_no)
        self.reason = reason
        message = f"{self.path}:{self.line_no}: malformed line: {reason}."
        if hint:
            message += f" {hint}"
        super().__init__(message)


class MissingFieldError(DataFormatError):
    """A required field/column is absent from an input file."""

    def __init__(self, path, field: str, available, hint: str = ""):
        self.path = str(path)
        self.field = field
        message = (
            f"{self.path}: required field '{field}' is missing (fields present: "
            f"{', '.join(available) if available else 'none'})."
        )
        if hint:
            message += f" {hint}"
        super().__init__(message)


class ConfigError(UserError, ValueError):
    """A configuration value, file or command-line override is invalid."""


class RegistrationError(ConfigError):
    """A model cannot be registered (:func:`recbole_iacn.registry.register`): its name is taken or ends in
    ``_IaCN``, it is not a host class, or its config file is missing."""


class AttachmentError(ConfigError):
    """IaCN cannot attach to a RecBole model through its fields (``<Name>_IaCN``): the message names the
    reason (one of :data:`recbole_iacn.registry.RECBOLE_EXCEPTIONS`, a restricted setting, or what the model
    does with its fields)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint file cannot be read as a recbole-iacn checkpoint."""


class UnknownIdError(UserError, KeyError):
    """A user or item id that the checkpoint's vocabulary (or the dataset's files) does not hold."""

    def __str__(self):  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class MissingExtraError(UserError, ImportError):
    """An optional dependency (an extra such as ``plots``) is not installed."""

    exit_code = 3


class OptionalDependencyError(UserError, ImportError):
    """An optional extra (Optuna) is needed by the search space but not installed."""


class CompatibilityError(ImportError):
    """The installed stack cannot run RecBole 1.2.1 even with the fixes of :mod:`recbole_iacn.compat`."""


class RankFailedError(UserError):
    """A rank of a multi-process run failed; the others were stopped."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class LaunchInterrupted(UserError):
    """The launcher of a multi-process run was stopped by a signal; its ranks were stopped too."""

    def __init__(self, signum: int):
        name = signal.Signals(signum).name
        if signum == signal.SIGINT:  # Ctrl-C: the command line's one 'interrupted' line, exit 130
            message = "interrupted; every rank of the multi-process run was stopped too."
        else:
            message = f"Stopped by {name}: every rank of the multi-process run was stopped too."
        super().__init__(message)
        self.exit_code = 128 + signum


class UnknownSettingWarning(UserWarning):
    """A setting that no YAML default and no declaration knows (a misspelling, mostly): RecBole accepts it
    silently and uses the default of the setting that was meant."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during training: ``checkpoint`` is the best checkpoint written so far, or None.

    A ``KeyboardInterrupt``, so code that catches that still sees it; the command line prints one line
    and exits with 130 (128 + SIGINT), as shells do."""

    exit_code = 130

    def __init__(self, checkpoint=None):
        super().__init__(checkpoint)
        self.checkpoint = checkpoint

    def message(self) -> str:
        if self.checkpoint:
            return f"interrupted; the best checkpoint so far is {self.checkpoint}"
        return "interrupted; no checkpoint was written yet (the first validation had not finished)"
