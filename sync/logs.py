"""A server's log: one line per event, stamped with the local time, made inert.

`zhibao serve`'s own lines (`log_line`) and uvicorn's (its error log, and the
access log when asked for) look alike: `2026-12-02T16:03:05+08:00 zhibao: …` and
`… uvicorn: WARNING: …`, so an operator can tell when the link failed and grep by time.
Control and bidi characters are shown as escapes: a peer's words (a refusal's text, a
request path) cannot rewrite the operator's terminal.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime
from typing import Any

from sync.protocol import i18n
from sync.protocol.errors import describe


def stamp(moment: datetime | None = None) -> str:
    """Local time with its offset, whole seconds."""
    return (moment or datetime.now()).astimezone().isoformat(timespec="seconds")


def inert(text: str) -> str:
    """`text` with every character that is not printable (controls, bidi marks, line
    breaks) written as a visible `\\uXXXX` escape."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in text)


def line(source: str, text: str) -> str:
    return f"{stamp()} {source}: {inert(text)}"


def log_line(key: str, **params: object) -> None:
    """One line on stderr, stamped with the local time: what an operator reads in the log.
    Callers pass no personal data (no exception messages from the tiers, no bodies); a
    peer's words in it are made inert."""
    print(line("zhibao", i18n.t(key, **params)), file=sys.stderr, flush=True)


class StampedFormatter(logging.Formatter):
    """uvicorn's records as log lines like serve's own. An exception attached to a record
    is shown by its type and place only (its message may quote personal data)."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created)
        level = f"{record.levelname}: " if record.levelno >= logging.WARNING else ""
        text = inert(level + record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            text += f" ({describe(record.exc_info[1])})"
        return f"{stamp(moment)} uvicorn: {text}"


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's `log_config`: its error and access loggers on stderr, stamped."""
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "stamped",
        "stream": "ext://sys.stderr",
    }
    quiet = {"handlers": ["stderr"], "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"stamped": {"()": StampedFormatter}},
        "handlers": {"stderr": handler},
        "loggers": {
            "uvicorn": quiet,
            "uvicorn.error": {"propagate": True},
            "uvicorn.access": quiet,
        },
    }
