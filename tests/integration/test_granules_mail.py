"""Error e-mails through a real SMTP server on loopback (aiosmtpd): grouped and rate-limited."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller
from granules_support import config, emulator, open_services

from earthkeep.granules.mail import MailAlerts
from earthkeep.granules.mirror import MirrorHooks, mirror
from earthkeep.granules.settings import MailSettings
from earthkeep.testbed.runner import serve_app
from earthkeep.testbed.servers import free_port


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        self.messages[-1]["X-Rcpt"] = ",".join(envelope.rcpt_tos)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def mail_settings(port: int) -> MailSettings:
    return MailSettings(mailhost=f"127.0.0.1:{port}", sender="worker@avo.test", recipient="oncall@avo.test")


def test_errors_are_grouped_and_at_most_one_mail_per_interval(smtp):
    inbox, port = smtp
    clock = Clock()
    alerts = MailAlerts(mail_settings(port), interval_s=900, clock=clock)
    for _ in range(50):
        alerts.error("mirror", "GINA products search answered HTTP 503; will retry")
    alerts.error("broker", "could not queue a btd task")
    assert alerts.flush() is True
    for _ in range(20):
        alerts.error("mirror", "GINA products search answered HTTP 503; will retry")
    assert alerts.flush() is False  # within the interval: held back
    clock.now += 901
    assert alerts.flush() is True
    assert alerts.flush() is False  # nothing new
    assert len(inbox.messages) == 2
    first, second = inbox.messages
    assert first["From"] == "worker@avo.test" and first["X-Rcpt"] == "oncall@avo.test"
    assert "51 errors" in first["Subject"]
    body = first.get_content()
    assert "   50 x [mirror] GINA products search answered HTTP 503" in body
    assert "    1 x [broker] could not queue a btd task" in body
    assert "   20 x [mirror]" in second.get_content()


def test_without_mailhost_nothing_is_collected():
    alerts = MailAlerts(MailSettings(mailhost=None, sender=None, recipient=None))
    alerts.error("mirror", "x")
    assert alerts.flush(force=True) is False and not alerts.enabled


async def test_bad_files_of_a_mirror_are_mailed_in_one_message(smtp, tmp_path):
    inbox, port = smtp
    emu = emulator(tmp_path)
    bad = [emu.sdr_at(0, "snpp", seg, "gilmore").format() for seg in ("SVM15", "SVM16")]
    emu.corrupt.update(bad)
    emu.add_granules(1)
    svc = open_services(f"sqlite:///{tmp_path}/c.db", tmp_path)
    alerts = MailAlerts(mail_settings(port))
    try:
        with serve_app(emu.app()) as base:
            await mirror(svc, config(svc, base), hooks=MirrorHooks(alerts=alerts))
        assert await alerts.aflush() is True
    finally:
        svc.close()
    assert len(inbox.messages) == 1
    body = inbox.messages[0].get_content()
    assert all(f"[mirror] bad file {name}: IntegrityError" in body for name in bad)
