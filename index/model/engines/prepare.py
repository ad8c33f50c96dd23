"""Saying so when the model is prepared for this machine (an export, a quantization, a compilation): once,
before the wait, with about how long it takes, then each step.

It goes through logging (logger `index.model.prepare`, level INFO), so each front end shows it its own way:
the CLI as a line and a progress bar (`PrepareEvent` rides on each record as `record.prepare`), the server
as log lines.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

LOGGER_NAME = "index.model.prepare"
log = logging.getLogger(LOGGER_NAME)


@dataclass(frozen=True)
class PrepareEvent:
    """One moment of a preparation: it starts, a step starts (`done` steps finished), it is done, or it failed
    (the error itself is raised to the caller)."""

    kind: Literal["start", "step", "done", "failed"]
    what: str
    done: int
    total: int
    seconds: float  # the expected length of the whole preparation


@contextmanager
def preparing(what: str, seconds: float, steps: int = 1) -> Iterator[Callable[[str], None]]:
    """Announce a one-off preparation of about `seconds`, then yield a function to call as each of its
    `steps` starts; the end is announced when the block exits normally."""
    log.info(
        "preparing the model for this machine (once, about %d s): %s",
        max(1, round(seconds)),
        what,
        extra={"prepare": PrepareEvent("start", what, 0, steps, seconds)},
    )
    started = time.perf_counter()
    begun = 0

    def step(description: str) -> None:
        nonlocal begun
        event = PrepareEvent("step", description, min(begun, steps), steps, seconds)
        begun += 1
        log.info("%s", description, extra={"prepare": event})

    try:
        yield step
    except BaseException:
        log.info(
            "preparing the model failed: %s", what, extra={"prepare": PrepareEvent("failed", what, 0, steps, seconds)}
        )
        raise
    log.info(
        "model prepared in %.1f s: %s",
        time.perf_counter() - started,
        what,
        extra={"prepare": PrepareEvent("done", what, steps, steps, seconds)},
    )
