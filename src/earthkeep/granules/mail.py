"""Error e-mails of the mirror and the task broker: grouped, and at most one per interval.

``MailAlerts.error(source, text)`` only records; :meth:`MailAlerts.flush` sends
one message listing every distinct error since the last one (with counts) when
the interval has passed since the previous e-mail. A failing upstream that
raises the same error every minute thus yields one e-mail per interval, not a
flood. Without ``MAILHOST``, ``LOG_SENDER`` and ``LOG_RECIPIENT`` nothing is sent.
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import time
from collections import Counter
from collections.abc import Callable
from email.message import EmailMessage

import structlog

from earthkeep.granules.settings import MailSettings

log = structlog.get_logger(__name__)
MAX_GROUPS = 100


class MailAlerts:
    """Collects errors and mails them in groups through ``MAILHOST`` (smtplib)."""

    def __init__(self, mail: MailSettings, *, interval_s: float = 900.0, port: int = 25,
                 clock: Callable[[], float] = time.monotonic, subject_prefix: str = "earthkeep granules") -> None:
        self._mail, self._interval, self._port, self._clock = mail, interval_s, port, clock
        self._prefix = subject_prefix
        self._pending: Counter[tuple[str, str]] = Counter()
        self._last_sent: float | None = None
        self.sent = 0
        self.dropped = 0

    @property
    def enabled(self) -> bool:
        return bool(self._mail.mailhost and self._mail.sender and self._mail.recipient)

    def error(self, source: str, text: str) -> None:
        """Record one error of ``source`` (``mirror``, ``broker`` ...)."""
        if not self.enabled:
            return
        key = (source, text[:500])
        if key not in self._pending and len(self._pending) >= MAX_GROUPS:
            self.dropped += 1
            return
        self._pending[key] += 1

    def due(self) -> bool:
        if not self._pending:
            return False
        return self._last_sent is None or self._clock() - self._last_sent >= self._interval

    def compose(self) -> EmailMessage:
        total = sum(self._pending.values())
        msg = EmailMessage()
        msg["From"], msg["To"] = str(self._mail.sender), str(self._mail.recipient)
        msg["Subject"] = f"{self._prefix}: {total} error{'s' if total != 1 else ''} on {socket.gethostname()}"
        lines = [f"{n:>5} x [{src}] {text}" for (src, text), n in self._pending.most_common()]
        if self.dropped:
            lines.append(f"... and {self.dropped} more errors of other kinds")
        msg.set_content("\n".join(lines) + "\n")
        return msg

    def flush(self, *, force: bool = False) -> bool:
        """Send the grouped errors if due (blocking); True when an e-mail went out."""
        if not self.enabled or not self._pending or not (force or self.due()):
            return False
        msg = self.compose()
        pending, dropped = self._pending, self.dropped
        self._pending, self.dropped = Counter(), 0
        try:
            host = str(self._mail.mailhost)
            h, _, p = host.partition(":")
            with smtplib.SMTP(h, int(p) if p else self._port, timeout=30) as smtp:
                smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            log.error("granules.mail_failed", mailhost=self._mail.mailhost, error=repr(exc))
            self._pending.update(pending)
            self.dropped += dropped
            return False
        self._last_sent = self._clock()
        self.sent += 1
        log.info("granules.mail_sent", to=self._mail.recipient)
        return True

    async def aflush(self, *, force: bool = False) -> bool:
        return await asyncio.to_thread(self.flush, force=force)

    async def run(self, every_s: float = 30.0) -> None:
        """Flush whenever due, forever (cancel to stop)."""
        while True:
            await asyncio.sleep(every_s)
            await self.aflush()
