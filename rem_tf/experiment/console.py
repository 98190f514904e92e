"""What a run shows on the console: our progress lines, not TensorFlow's and Keras's INFO lines."""

import logging
import os

from absl import logging as absl_logging

_LIBRARIES = ("tensorflow", "keras", "tensorflow_probability")


def _only_warnings_from_libraries(record):
    path = record.pathname.replace(os.sep, "/")
    return record.levelno >= logging.WARNING or not any(f"/{name}/" in path for name in _LIBRARIES)


def quiet_library_logs():
    """Drops the INFO lines of TensorFlow, Keras and TFP (one per checkpoint write, …); keeps
    theirs from WARNING up, and every line of rem_tf's."""
    for logger in (absl_logging.get_absl_logger(), logging.getLogger("tensorflow")):
        if _only_warnings_from_libraries not in logger.filters:
            logger.addFilter(_only_warnings_from_libraries)
