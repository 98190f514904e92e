"""The errors `rem_tf.experiment` raises for a caller to report (run.py maps them to exit
codes), and SIGTERM turned into Ctrl-C's KeyboardInterrupt (`interruptible`), which the
library turns into `Interrupted`."""

import contextlib
import signal


class ConfigError(ValueError):
    """A bad config value, path or input file.

    The message is one line that names the field or path and says how to fix
    it; run.py prints it as `error: <message>` and exits with status 2.
    """


class StorageError(ConfigError):
    """A file of the run directory could not be written: no space, a read-only file system,
    no permission.

    The message is one line naming the path, what failed and what to do; nothing
    half-written is left behind and the last good checkpoint is kept, so the same
    command resumes once the cause is fixed. A `ConfigError`, so run.py exits with 2.
    """


class Interrupted(Exception):
    """Ctrl-C or SIGTERM stopped training, the export or an evaluation; a checkpoint was saved
    where possible, and the same command resumes.

    Attributes:
      step: the optimizer step training stopped at (None for a stopped evaluation of a
        model file alone).
    """

    def __init__(self, message, step):
        super().__init__(message)
        self.step = step


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or Inf.

    The message names the step, the method, the last good checkpoint (which is
    kept: no NaN state is ever saved) and what to try.
    """


@contextlib.contextmanager
def interruptible():
    """SIGTERM raises KeyboardInterrupt inside the block, as Ctrl-C does, so that both end a
    run the same way (`Interrupted`). Does nothing outside the main thread."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
