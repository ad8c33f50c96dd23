"""What the commands show while the model is prepared for this machine (`index.model.engines.prepare`): the
notice on stderr, and a progress bar of its steps while a long one runs."""

from __future__ import annotations

import logging
import sys
from typing import Any

from tqdm import tqdm

from index.model.engines.prepare import LOGGER_NAME, PrepareEvent

# Preparations expected to take less than this get their notice but no bar.
BAR_FROM_SECONDS = 5


class PreparationDisplay(logging.Handler):
    """Prints each preparation's notice; draws its steps as a bar (unless `bar` is off) when it is long."""

    def __init__(self, bar: bool) -> None:
        super().__init__(logging.INFO)
        self.show_bar = bar
        self._bar: Any = None

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "prepare", None)
        if not isinstance(event, PrepareEvent):
            print(record.getMessage(), file=sys.stderr, flush=True)
            return
        if event.kind == "start":
            print(record.getMessage(), file=sys.stderr, flush=True)
            if self.show_bar and event.seconds >= BAR_FROM_SECONDS:
                self._bar = tqdm(total=event.total, unit="step", leave=False, file=sys.stderr)
        elif self._bar is not None:
            self._bar.n = event.done
            if event.kind == "step":
                self._bar.set_description(event.what)
            else:  # done or failed: the bar goes (an error is the caller's to print)
                self._bar.refresh()
                self._bar.close()
                self._bar = None


def show_model_preparation(bar: bool = True) -> None:
    """Show the model's one-off preparation on stderr (one handler per process, INFO records of that logger)."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in logger.handlers:
        if isinstance(handler, PreparationDisplay):
            handler.show_bar = bar
            return
    logger.addHandler(PreparationDisplay(bar))
    logger.setLevel(logging.INFO)
    # Not also through the root handler the commands install for warnings.
    logger.propagate = False
