"""Ways to reach a customer beyond the record every notification gets:
an HTTP webhook and SMTP mail, each on when its setting is set."""

from __future__ import annotations

import json
import smtplib
import urllib.request
from email.message import EmailMessage
from typing import Any, Protocol

from ordersys.shop.settings import ShopSettings


class Channel(Protocol):
    name: str

    def deliver(self, notification: dict[str, Any]) -> None:
        """Send ``notification``; raise if it could not be sent."""


class Webhook:
    """POSTs each notification as JSON; any answer but 2xx is a failure."""

    name = "webhook"

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout

    def deliver(self, notification: dict[str, Any]) -> None:
        request = urllib.request.Request(
            self.url,
            data=json.dumps(notification, default=str).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=self.timeout):
            pass


class Mail:
    """Mails each notification to the customer's address, when it is known."""

    name = "smtp"

    def __init__(self, host: str, port: int, sender: str) -> None:
        self.host, self.port, self.sender = host, port, sender

    def deliver(self, notification: dict[str, Any]) -> None:
        if not notification.get("email"):
            msg = "no email address is known for this customer"
            raise LookupError(msg)
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = notification["email"]
        mail["Subject"] = notification["subject"]
        mail.set_content(notification["body"])
        with smtplib.SMTP(self.host, self.port, timeout=10) as smtp:
            smtp.send_message(mail)


def channels_from(settings: ShopSettings) -> list[Channel]:
    channels: list[Channel] = []
    if settings.notify_webhook_url:
        channels.append(Webhook(settings.notify_webhook_url))
    if settings.smtp_host:
        mail = Mail(settings.smtp_host, settings.smtp_port, settings.smtp_sender)
        channels.append(mail)
    return channels
