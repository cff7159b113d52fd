"""Logging: library modules report through ``logging.getLogger(__name__)``, never ``print``.

Records of every medseg module go to the ``medseg`` logger. Python programs and notebooks decide
themselves what to show (``logging.basicConfig(level=logging.INFO)`` shows progress messages;
without any set-up only warnings and errors reach stderr). The command line calls
:func:`configure_cli_logging` once: information lines (``planning ...``, ``epoch 3/60 ...``)
are printed as they are, warnings and errors as ``medseg COMMAND: warning: ...`` on stderr;
``--quiet`` hides the information lines and progress bars, never warnings or errors.
"""

from __future__ import annotations

import logging
import sys

LOGGER_NAME = "medseg"


class _CommandFormatter(logging.Formatter):
    """Information lines as they are; warnings and errors prefixed with the command and the level."""

    def __init__(self, command: str) -> None:
        super().__init__()
        self.command = command

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"medseg {self.command}: {record.levelname.lower()}: {message}"
        return message


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is when a record arrives (tests and notebooks replace it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def configure_cli_logging(command: str, quiet: bool = False) -> logging.Logger:
    """Show medseg's log records on stderr for command ``command``; ``quiet`` keeps only warnings and errors.

    Calling it again (several commands in one process, as in the tests) replaces the earlier handler.
    """
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        if isinstance(handler, _StderrHandler):
            logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(_CommandFormatter(command))
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    return logger
