"""User-facing errors.

Every error a user can cause by what they type or by the files they give us derives from
:class:`UserError`. The command line prints its message as one paragraph and exits with a non-zero
status, without a traceback; the Python API lets it propagate like any exception.
"""


import signal
import sys
import threading
from typing import Callable, NoReturn


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
    """An optional dependency is not installed: an extra such as ``plots`` (matplotlib), or Optuna for a study
    whose space says ``search: optuna``. The message gives the install command; exit status 3."""

    exit_code = 3


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


#: "process": this process ends with the command (run_command); "skip_teardown": see skip_native_teardown
_COMMAND = {"process": False, "skip_teardown": False}


def run_command(main: Callable[[], int]) -> NoReturn:
    """``sys.exit(main())`` for a ``python -m``/script entry point whose main runs inside :class:`CtrlC`: once
    main has returned, Ctrl-C no longer changes the exit status (the work and its one line are done). After
    :func:`skip_native_teardown`, the process ends by :func:`exit_skipping_teardown` instead."""
    _COMMAND["process"] = True
    status = main()
    if _COMMAND["skip_teardown"]:
        exit_skipping_teardown(status)
    sys.exit(status)


def skip_native_teardown() -> None:
    """Have :func:`run_command` end this process without the interpreter's teardown, once its command has
    returned. Called before a library with threads of its own in native code is started (Ray): a study whose
    Ctrl-C landed while ``ray.init`` finished printed its 'interrupted' line and then died in that teardown with
    a segmentation fault (status -11 instead of 130, 3 times in 28 tries), after faulthandler had stopped
    listening, that is in Ray's native destructors. Nothing the command wrote is skipped: the exit handlers
    (``atexit``: logging, temporary folders, Ray's own shutdown) still run. Without effect where no command
    ends the process (the Python API)."""
    _COMMAND["skip_teardown"] = True


def exit_skipping_teardown(status) -> NoReturn:
    """End the process with ``status`` (an exit status, ``None`` for 0) as ``sys.exit`` would, but by
    ``os._exit`` once the exit handlers have run and the standard streams are flushed: no module teardown, no
    native destructors."""
    import atexit
    import os

    code = 0 if status is None else status if isinstance(status, int) else 1
    if not isinstance(status, (int, type(None))):
        print(status, file=sys.stderr)  # as sys.exit("message") does
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the status is decided: a Ctrl-C now changes nothing
    try:
        atexit._run_exitfuncs()  # (what the interpreter runs first at exit; each handler's error is printed)
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
                pass
        os._exit(code)


class CtrlC:
    """A command's main inside ``with CtrlC() as ctrl_c``: Ctrl-C (SIGINT) at any moment ends it with one line
    and exit 130, as shells report it::

        with CtrlC() as ctrl_c:
            try:
                ...                        # the work; then, before printing the output:
                ctrl_c.raise_if_pressed()
            except KeyboardInterrupt:
                return ctrl_c.exit()       # prints 'interrupted', returns 130

    Inside it Ctrl-C raises ``KeyboardInterrupt`` as Python's own handler does, and is remembered
    (``pressed``). Where Python cannot raise it, in a finaliser (``__del__``) or a weakref or garbage-collection
    callback, such as run while torch is imported, Python prints "Exception ignored in ..." with a traceback
    and goes on, so the command went on to exit 0: that ``KeyboardInterrupt`` is not printed, and
    ``pressed`` stays true for :meth:`raise_if_pressed`. After :meth:`exit`, Ctrl-C is ignored. Outside the
    main thread, or where SIGINT is ignored (a background job of a shell without job control), it does nothing.
    """

    exit_code = 130

    def __init__(self):
        self.pressed = False
        self._exiting = False
        self._saved = None

    def __enter__(self) -> "CtrlC":
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) != signal.SIG_IGN:
            self._saved = (signal.signal(signal.SIGINT, self._on_sigint), sys.unraisablehook)
            sys.unraisablehook = self._on_unraisable
        return self

    def __exit__(self, *exc) -> bool:
        if self._saved is not None:
            handler, hook = self._saved
            self._saved = None
            # In a process that ends with this command (run_command), Ctrl-C is ignored from here on: its status
            # is decided, and CPython's shutdown (seconds, with torch) resets Python's handler to the system's,
            # so a Ctrl-C there killed the process with status -2 and no word, after its work was done.
            signal.signal(signal.SIGINT, signal.SIG_IGN if _COMMAND["process"] else handler)
            sys.unraisablehook = hook
        return False

    def _on_sigint(self, signum, frame):
        self.pressed = True
        if not self._exiting:
            raise KeyboardInterrupt

    def _on_unraisable(self, unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            self.pressed = True  # a Ctrl-C that landed in a finaliser: the command ends with exit 130 all the same
            return
        (self._saved[1] if self._saved is not None else sys.__unraisablehook__)(unraisable)

    def raise_if_pressed(self) -> None:
        """Raise ``KeyboardInterrupt`` if Ctrl-C was pressed, even where Python could not raise it then."""
        if self.pressed:
            raise KeyboardInterrupt

    def exit(self, message: str = "interrupted") -> int:
        """Print ``message`` (one line, to stderr) and return 130; Ctrl-C is ignored from here on."""
        self._exiting = True
        # CPython ends a ``python -m`` command with SIGINT (status -2) instead of its exit status when a
        # KeyboardInterrupt left code run by exec() or eval() of a string, even one caught afterwards (dataclasses
        # and namedtuple make their methods so, many times while torch is imported); the next exec() of a string
        # that ends normally clears that mark.
        exec("")
        print(message, file=sys.stderr)
        return self.exit_code
