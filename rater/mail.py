"""E-mail through SMTP: invoices (each PDF to its client's billing address), and the
low-balance notices of rater.notifications.

The server is the ``[mail]`` section of the config (see ``rater/serve.toml``).
One connection carries a batch; a message the server refuses fails alone, and
a server that cannot be reached fails the batch, each invoice with the reason.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from .invoices import Invoice, Issuer
from .settings import MailSettings


def sender(settings: MailSettings) -> str:
    return settings.sender or f"billing@{socket.getfqdn()}"


def unsendable(inv: Invoice) -> str | None:
    """Why an invoice cannot be e-mailed (None: it can)."""
    if not inv.details.get("email"):
        return "no billing e-mail"
    return None if inv.pdf else "no PDF"


def invoice_message(inv: Invoice, issuer: Issuer, from_address: str) -> EmailMessage:
    """The message: a short text and the invoice's PDF attached."""
    why = unsendable(inv)
    if why is not None or inv.pdf is None:
        raise ValueError(why)
    to = inv.details["email"]
    kind = "Credit note" if inv.kind == "credit-note" else "Invoice"
    msg = EmailMessage()
    msg["From"] = f"{issuer.name} <{from_address}>"
    msg["To"] = to
    msg["Subject"] = f"{kind} {inv.name} for {inv.period}"
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=from_address.rpartition("@")[2])
    msg.set_content(
        f"Dear {inv.client_name},\n\n"
        f"please find attached {kind.lower()} {inv.name} for {inv.period}: "
        f"{inv.money(inv.total)} {inv.currency}; amount due {inv.money(inv.due)} "
        f"{inv.currency}" + (f" by {inv.due_date}" if inv.due_date else "") + ".\n\n"
        f"{issuer.name}\n")
    msg.add_attachment(Path(inv.pdf).read_bytes(), maintype="application", subtype="pdf",
                       filename=Path(inv.pdf).name)
    return msg


def connect(settings: MailSettings) -> smtplib.SMTP:
    """A connection to the configured SMTP server, secured and logged in as it says
    (close it, or use it as a context manager)."""
    server: smtplib.SMTP
    if settings.tls == "ssl":
        server = smtplib.SMTP_SSL(settings.host, settings.port, timeout=settings.timeout,
                                  context=ssl.create_default_context())
    else:
        server = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    try:
        if settings.tls == "starttls":
            server.starttls(context=ssl.create_default_context())
        if settings.username:
            server.login(settings.username, settings.password or "")
    except BaseException:
        server.close()
        raise
    return server


#: What a refused message raises: that message alone failed (an address the server
#: cannot take, say), the connection goes on.
REFUSED = (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError, smtplib.SMTPSenderRefused,
           smtplib.SMTPNotSupportedError, UnicodeError)


def send_invoices(settings: MailSettings, batch: Sequence[tuple[Invoice, Issuer]]
                  ) -> list[tuple[Invoice, str | None]]:
    """Send each invoice; returns (invoice, None) when the server took it, else the
    reason it was not sent."""
    results: list[tuple[Invoice, str | None]] = [
        (inv, why) for inv, _ in batch if (why := unsendable(inv)) is not None]
    ready = [(inv, issuer) for inv, issuer in batch if unsendable(inv) is None]
    if not ready:
        return results
    from_address = sender(settings)          # a name lookup, when not configured: once
    try:
        with connect(settings) as server:
            for inv, issuer in ready:
                # Each message made as it is sent: one PDF in memory at a time.
                try:
                    msg = invoice_message(inv, issuer, from_address)
                except OSError as exc:
                    results.append((inv, f"cannot read its PDF: {exc}"))
                    continue
                try:
                    server.send_message(msg)
                    results.append((inv, None))
                except REFUSED as exc:
                    results.append((inv, f"refused: {exc}"))
    except (OSError, smtplib.SMTPException) as exc:
        done = {inv.id for inv, _ in results}
        reason = f"SMTP {settings.host}:{settings.port}: {exc}"
        results += [(inv, reason) for inv, _ in ready if inv.id not in done]
    return results
