"""The errors `rem_tf.experiment` raises for a caller to report (run.py maps them to exit codes)."""


class ConfigError(ValueError):
    """A bad config value, path or input file.

    The message is one line that names the field or path and says how to fix
    it; run.py prints it as `error: <message>` and exits with status 2.
    """


class Interrupted(Exception):
    """Ctrl-C or SIGTERM stopped training; a checkpoint was saved where possible.

    Attributes:
      step: the optimizer step training stopped at.
    """

    def __init__(self, message, step):
        super().__init__(message)
        self.step = step


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or Inf.

    The message names the step, the method, the last good checkpoint (which is
    kept: no NaN state is ever saved) and what to try.
    """
