"""Clients (the paying entities) and accounts (how their traffic is recognised).

A client has a currency, a time zone, a status (``active``; ``stop``: calls
are refused in real time; ``deleted``: its accounts stop matching, its history
stays), prepaid or postpaid billing, the orig rate tables it uses from given
dates, and, when it is also a vendor, a term rate table.

An account belongs to one client and is recognised by one identifier: an IP
address or CIDR block (optionally with a tech prefix), a username, an ANI/CLI,
or a tech prefix alone. It may override the client's rate table and carry the
dial plan of the switch that sends its numbers.

Matching a call to an account, most specific first:

1. the username;
2. the ANI (digits, as the dial plan reads them: none means E.164);
3. the longest CIDR block holding the source address that has accounts: an
   account of that block whose tech prefix begins the number (the longest
   one), else the block's account without a tech prefix;
4. the longest tech prefix alone that begins the number.

Clients and accounts live in the LMDB environment beside the decks, so the
real-time path reads them without SQL. Every change bumps a generation number
(``m/accounts``) in the same transaction; an :class:`AccountIndex` (an
in-memory view for matching many calls) knows when it is out of date.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import ipaddress
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from . import audit
from .dialplan import DialPlan
from .errors import (
    Conflict,
    InvalidArgument,
    InvalidNumber,
    UnknownAccount,
    UnknownClient,
)
from .money import format_nanos, to_nano
from .numbers import normalise_number
from .store import Store
from .tariff import CURRENCY
from .timeutil import zone

STATUSES = ("active", "stop", "deleted")
BILL_EVENTS = ("setup", "connect", "disconnect")
MODES = ("prepaid", "postpaid")
DEFAULT_MAX_CALL_LENGTH = 7200
MAX_CALL_LENGTH = 86400
_GENERATION = b"accounts"
_NAME = re.compile(r"[^\s\x00-\x1f,][^\x00-\x1f,]{0,79}")


def parse_amount(text: str | Decimal, what: str, *, negative: bool = False) -> int:
    """A money amount given by a person, in nanos (at most 9 decimals)."""
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise InvalidArgument(f"{what}: {text!r} is not an amount") from None
    if not value.is_finite():
        raise InvalidArgument(f"{what}: {text!r} is not an amount")
    if value and value.adjusted() > 18:
        raise InvalidArgument(f"{what}: {text!r} is too large")
    if value and value.adjusted() < -9:
        raise InvalidArgument(f"{what}: {text!r} has more than 9 decimal places")
    if value < 0 and not negative:
        raise InvalidArgument(f"{what}: {text!r} is negative")
    try:
        nanos = to_nano(value)
    except ValueError as exc:
        raise InvalidArgument(f"{what}: {exc}") from None
    if abs(nanos) >= 2**62:
        raise InvalidArgument(f"{what}: {text!r} is too large")
    return nanos


def show_amount(nanos: int) -> str:
    """An amount as a decimal string: at least 2 places, more only where they are not 0.

    Written from the integer (the RADIUS agent shows one in every Access-Accept)."""
    return format_nanos(nanos, 2)


INVOICE_TEMPLATES = ("default", "extended")
#: The invoice states shown; ``overdue`` is an issued invoice past its due date, stored as
#: issued (rater.invoices).
SHOWN_STATES = ("draft", "issued", "overdue", "paid", "void")
#: An issuer's invoice numbers unless it says otherwise.
DEFAULT_PATTERN = "INV-{yyyy}-{seq:06}"
VAT_ID = re.compile(r"[A-Z]{2}[0-9A-Z+*.]{2,12}")
BIC = re.compile(r"[A-Z]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?")
#: What a SEPA mandate reference may hold (the pain.008 Max35Text restricted set).
MANDATE_ID = re.compile(r"[A-Za-z0-9+?/:().,' -]{1,35}")


def tax_percent(name: str, percent: str) -> Decimal:
    """A tax's rate as given (a decimal string of at most 4 places, 0..100)."""
    if not name or "," in name or "=" in name or name != name.strip():
        raise InvalidArgument(f"tax name {name!r}: not empty, no comma or '=', no "
                              f"surrounding space")
    # Plain ASCII digits as printed on an invoice: no sign, exponent, space or underscore.
    if not re.fullmatch(r"[0-9]{1,3}(\.[0-9]{1,4})?", percent) or Decimal(percent) > 100:
        raise InvalidArgument(f"tax {name}: {percent!r} must be a percentage 0 to 100 "
                              f"with at most 4 decimal places, such as 21 or 5.5")
    return Decimal(percent)


def iban_valid(iban: str) -> bool:
    """ISO 13616: two letters, two check digits (02 to 98), up to 30 letters or digits,
    and the whole, moved and read as a number, leaves 1 modulo 97. (Each country's own
    length and layout are not checked.)"""
    if not re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}", iban) or not (
            "02" <= iban[2:4] <= "98"):
        return False                    # check digits 00, 01 and 99 are never issued
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def check_account(iban: str | None, bic: str | None) -> None:
    """A bank account: the IBAN by its check digits, the BIC by its form (None: not
    given)."""
    if iban is not None and not iban_valid(iban):
        raise InvalidArgument(f"IBAN {iban!r} is not valid (country, check digits, account; "
                              f"no spaces)")
    if bic is not None and not BIC.fullmatch(bic):
        raise InvalidArgument(f"BIC {bic!r}: 8 or 11 letters and digits")


def check_mandate(mandate: dict[str, str]) -> None:
    """A SEPA Direct Debit mandate: IBAN, BIC, its reference and the date it was signed."""
    if set(mandate) != {"iban", "bic", "id", "date"}:
        raise InvalidArgument("a SEPA mandate has an IBAN, a BIC, an id and a date")
    check_account(mandate["iban"], mandate["bic"])
    if not MANDATE_ID.fullmatch(mandate["id"]):
        raise InvalidArgument(f"mandate id {mandate['id']!r}: 1 to 35 letters, digits or "
                              f"+?/-:().,' and space")
    try:
        # The pattern first: fromisoformat alone also takes 20260101 and week dates.
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", mandate["date"]):
            raise ValueError
        date.fromisoformat(mandate["date"])
    except ValueError:
        raise InvalidArgument(f"mandate date {mandate['date']!r} is not a date "
                              f"YYYY-MM-DD") from None


@dataclass
class Client:
    id: int
    name: str
    currency: str
    status: str = "active"
    timezone: str = "UTC"
    mode: str = "prepaid"
    #: How far below zero a prepaid client's balance may go, in nanos.
    credit_limit: int = 0
    #: Orig rate tables: [effective_from or None, table], in date order.
    rate_tables: list[list[Any]] = field(default_factory=list)
    term_table: str | None = None
    payment_terms_days: int = 30
    bill_by: str = "connect"
    max_call_length: int = DEFAULT_MAX_CALL_LENGTH
    capacity: int | None = None
    tags: list[str] = field(default_factory=list)
    billing_email: str | None = None
    low_balance_threshold: int | None = None
    #: Calls in progress allowed while below the low-balance threshold (None: as many as
    #: capacity allows).
    low_balance_capacity: int | None = None
    #: Invoiced by the scheduler on its billing day, and the invoice e-mailed.
    auto_invoice: bool = False
    #: The day of the month its monthly invoice periods start (1..28).
    billing_day: int = 1
    #: The HTML template of its invoices (one of INVOICE_TEMPLATES).
    invoice_template: str = "default"
    #: Taxes on its invoices, in order: [name, percent], the percent a decimal string.
    taxes: list[list[str]] = field(default_factory=list)
    #: EU reverse charge: its invoices carry no tax; the client accounts for it.
    reverse_charge: bool = False
    #: The client's own VAT id, printed on its invoices.
    vat_id: str | None = None
    #: Its SEPA Direct Debit mandate: iban, bic, id, date (YYYY-MM-DD); None: none.
    sepa_mandate: dict[str, str] | None = None
    #: The issuer of its invoices (``rater issuer``); None: the default issuer.
    issuer: str | None = None
    #: The postal address printed on its invoices.
    address: str | None = None
    created: int = 0
    updated: int = 0

    @property
    def prepaid(self) -> bool:
        return self.mode == "prepaid"

    @property
    def vendor(self) -> bool:
        return self.term_table is not None

    def only_table(self) -> str | None:
        """The orig rate table of every date, when there is just one from the beginning."""
        if len(self.rate_tables) == 1 and self.rate_tables[0][0] is None:
            return str(self.rate_tables[0][1])
        return None

    def rate_table_at(self, t: int) -> str | None:
        """The orig rate table in force at instant ``t`` (None: none yet)."""
        found = None
        for since, table in self.rate_tables:
            if since is None or since <= t:
                found = table
            else:
                break
        return found

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Client:
        return cls(**d)

    def to_display(self) -> dict[str, Any]:
        """For people and --json: amounts as decimal strings."""
        d = self.to_json()
        d["credit_limit"] = show_amount(self.credit_limit)
        d["low_balance_threshold"] = (None if self.low_balance_threshold is None
                                      else show_amount(self.low_balance_threshold))
        d["rate_tables"] = [{"from": since, "table": table} for since, table in self.rate_tables]
        return d

    def check(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise InvalidArgument(f"client name {self.name!r}: 1 to 80 characters, no comma "
                                  f"or control character, not starting with a space")
        if not CURRENCY.fullmatch(self.currency):
            raise InvalidArgument(f"currency {self.currency!r} is not an ISO 4217 code "
                                  f"such as USD")
        if self.status not in STATUSES:
            raise InvalidArgument(f"status {self.status!r}: one of {', '.join(STATUSES)}")
        if self.mode not in MODES:
            raise InvalidArgument(f"mode {self.mode!r}: prepaid or postpaid")
        if self.bill_by not in BILL_EVENTS:
            raise InvalidArgument(f"bill events by {self.bill_by!r}: one of "
                                  f"{', '.join(BILL_EVENTS)}")
        zone(self.timezone)
        if not 0 <= self.payment_terms_days <= 3650:
            raise InvalidArgument(f"payment terms {self.payment_terms_days}: 0..3650 days")
        if not 1 <= self.max_call_length <= MAX_CALL_LENGTH:
            raise InvalidArgument(f"max call length {self.max_call_length}: "
                                  f"1..{MAX_CALL_LENGTH} seconds")
        for what, n in (("capacity", self.capacity),
                        ("low-balance capacity", self.low_balance_capacity)):
            if n is not None and n < 0:
                raise InvalidArgument(f"{what} {n} is negative")
        if self.billing_email is not None and not re.fullmatch(
                r"[^@\s,]+@[^@\s,]+\.[^@\s,]+", self.billing_email):
            raise InvalidArgument(f"billing email {self.billing_email!r} is not an address")
        for tag in self.tags:
            if not tag or "," in tag or tag != tag.strip():
                raise InvalidArgument(f"tag {tag!r}: no comma, no surrounding space")
        starts = [s for s, _ in self.rate_tables]
        if any(s is None for s in starts[1:]):
            raise InvalidArgument("only the first rate table may apply from the beginning")
        dated = [s for s in starts if s is not None]
        if dated != sorted(set(dated)):
            raise InvalidArgument("two rate tables from the same date")
        self._check_invoicing()

    def _check_invoicing(self) -> None:
        if not 1 <= self.billing_day <= 28:
            raise InvalidArgument(f"billing day {self.billing_day}: 1..28 (every month has it)")
        if self.invoice_template not in INVOICE_TEMPLATES:
            raise InvalidArgument(f"invoice template {self.invoice_template!r}: one of "
                                  f"{', '.join(INVOICE_TEMPLATES)}")
        names = [name for name, _ in self.taxes]
        if len(set(names)) != len(names):
            raise InvalidArgument("two taxes of the same name")
        for name, percent in self.taxes:
            tax_percent(name, percent)
        if self.vat_id is not None and not VAT_ID.fullmatch(self.vat_id):
            raise InvalidArgument(f"VAT id {self.vat_id!r}: a country code and 2 to 12 "
                                  f"letters or digits, such as DE123456789")
        if self.reverse_charge and self.vat_id is None:
            raise InvalidArgument("reverse charge needs the client's VAT id")
        if self.sepa_mandate is not None:
            check_mandate(self.sepa_mandate)
        if self.issuer is not None and not _NAME.fullmatch(self.issuer):
            raise InvalidArgument(f"issuer {self.issuer!r}: 1 to 80 characters, no comma")
        if self.address is not None and not (0 < len(self.address.strip()) <= 500):
            raise InvalidArgument("address: 1 to 500 characters")


@dataclass
class Account:
    id: int
    client: int
    ip: str | None = None
    username: str | None = None
    ani: str | None = None
    tech_prefix: str | None = None
    rate_table: str | None = None
    dial_plan: dict[str, str] | None = None
    created: int = 0
    #: The password or PIN a RADIUS Access-Request must give (PAP), salted and hashed
    #: (``pbkdf2_sha256$ROUNDS$SALT$HASH``); None: the identifiers alone recognise it.
    password: str | None = None

    @property
    def plan(self) -> DialPlan | None:
        return DialPlan.from_json(self.dial_plan)

    def identifier(self) -> str:
        """How people see what recognises the account."""
        parts = []
        if self.ip is not None:
            parts.append(f"ip {self.ip}")
        if self.username is not None:
            parts.append(f"username {self.username}")
        if self.ani is not None:
            parts.append(f"ani {self.ani}")
        if self.tech_prefix is not None:
            parts.append(f"tech prefix {self.tech_prefix}")
        return ", ".join(parts)

    def index_key(self) -> bytes:
        """The account's key in the identifier index (unique across accounts)."""
        if self.username is not None:
            return b"u" + self.username.encode()
        if self.ani is not None:
            return b"n" + self.ani.encode()
        if self.ip is not None:
            net = ipaddress.ip_network(self.ip)
            return (b"p" + bytes([net.version, net.prefixlen]) + net.network_address.packed
                    + b"\0" + (self.tech_prefix or "").encode())
        assert self.tech_prefix is not None
        return b"t" + self.tech_prefix.encode()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Account:
        return cls(**d)

    def shown(self) -> dict[str, Any]:
        """For people and the audit log: whether there is a password, not its hash."""
        d = asdict(self)
        d["password"] = self.password is not None
        return d

    def password_matches(self, given: str | None) -> bool:
        """Whether ``given`` is the account's password (True when it has none)."""
        if self.password is None:
            return True
        if given is None:
            return False
        _, rounds, salt, digest = self.password.split("$")
        got = hashlib.pbkdf2_hmac("sha256", given.encode(), bytes.fromhex(salt), int(rounds))
        return hmac.compare_digest(got.hex(), digest)


#: Few rounds: the hash keeps a stored PIN from being read back, and a RADIUS
#: authorization must stay within a millisecond.
PASSWORD_ROUNDS = 1000


def hash_password(password: str) -> str:
    if not password or len(password.encode()) > 128:
        raise InvalidArgument("a password or PIN has 1 to 128 bytes (RADIUS PAP's limit)")
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, PASSWORD_ROUNDS)
    return f"pbkdf2_sha256${PASSWORD_ROUNDS}${salt.hex()}${digest.hex()}"


def normalise_ip(text: str) -> str:
    """An address or CIDR block as stored: ``10.0.0.1`` or ``10.0.0.0/24``."""
    try:
        net = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise InvalidArgument(f"ip {text!r}: {exc}") from None
    full = 32 if net.version == 4 else 128
    return str(net.network_address) if net.prefixlen == full else str(net)


def check_identifiers(ip: str | None, username: str | None, ani: str | None,
                      tech_prefix: str | None) -> None:
    given = [n for n, v in (("ip", ip), ("username", username), ("ani", ani),
                            ("tech prefix", tech_prefix)) if v is not None]
    if not given:
        raise InvalidArgument("an account needs an identifier: --ip, --username, --ani "
                              "or --tech-prefix")
    if len(given) > 1 and set(given) != {"ip", "tech prefix"}:
        raise InvalidArgument(f"one identifier per account (or --ip with --tech-prefix), "
                              f"not {' and '.join(given)}")
    if username is not None and (not username or any(c.isspace() for c in username)):
        raise InvalidArgument(f"username {username!r}: no spaces, not empty")
    if tech_prefix is not None and not re.fullmatch(r"[0-9#*]{1,16}", tech_prefix):
        raise InvalidArgument(f"tech prefix {tech_prefix!r}: 1 to 16 of 0-9 # *")


def _id_key(n: int) -> bytes:
    return n.to_bytes(4, "big")


class Registry:
    """Clients and accounts in one data directory."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- reading

    def generation(self, txn: Any) -> int:
        raw = self.store.meta.get(txn, _GENERATION)
        return int(raw) if raw else 0

    def bump(self, txn: Any) -> None:
        """Mark clients, accounts or subscriptions changed: account indexes (and the
        allowances pricers hold) read them again."""
        self.store.meta.put(txn, _GENERATION, str(self.generation(txn) + 1).encode())

    def client_id(self, txn: Any, name: str) -> int:
        raw = self.store.client_names.get(txn, name.encode())
        if raw is None:
            raise UnknownClient(f"no client named {name!r}")
        return int.from_bytes(raw, "big")

    def client_by_id(self, txn: Any, cid: int) -> Client:
        raw = self.store.clients.get(txn, _id_key(cid))
        if raw is None:
            raise UnknownClient(f"no client with id {cid}")
        return Client.from_json(json.loads(raw))

    def get_client(self, txn: Any, name: str) -> Client:
        return self.client_by_id(txn, self.client_id(txn, name))

    def client(self, name: str) -> Client:
        with self.store.read() as txn:
            return self.get_client(txn, name)

    def iter_clients(self, txn: Any) -> Iterator[Client]:
        for _, raw in self.store.clients.items(txn):
            yield Client.from_json(json.loads(raw))

    def clients(self, *, status: str | None = None, tag: str | None = None) -> list[Client]:
        with self.store.read() as txn:
            found = list(self.iter_clients(txn))
        return sorted((c for c in found if (status is None or c.status == status)
                       and (tag is None or tag in c.tags)), key=lambda c: c.name.lower())

    def get_account(self, txn: Any, aid: int) -> Account:
        raw = self.store.accounts.get(txn, _id_key(aid))
        if raw is None:
            raise UnknownAccount(f"no account with id {aid}")
        return Account.from_json(json.loads(raw))

    def account(self, aid: int) -> Account:
        with self.store.read() as txn:
            return self.get_account(txn, aid)

    def iter_accounts(self, txn: Any) -> Iterator[Account]:
        for _, raw in self.store.accounts.items(txn):
            yield Account.from_json(json.loads(raw))

    def accounts(self, client: str | None = None) -> list[Account]:
        with self.store.read() as txn:
            cid = self.client_id(txn, client) if client is not None else None
            return [a for a in self.iter_accounts(txn) if cid is None or a.client == cid]

    # -- clients

    def _check_tables(self, txn: Any, client: Client) -> None:
        """Every table the client names exists and is in the client's currency."""
        from .decks import Decks

        decks = Decks(self.store)
        named = [t for _, t in client.rate_tables]
        if client.term_table is not None:
            named.append(client.term_table)
        for name in named:
            currency = decks.currency_in(txn, name)
            if currency != client.currency:
                raise Conflict(f"rate table {name} is in {currency}, client {client.name} "
                               f"in {client.currency}")

    def set_status(self, txn: Any, client: Client, status: str, action: str) -> Client:
        """Change a client's status in the caller's transaction (audited as ``action``)."""
        new = replace(client, status=status, updated=int(time.time()))
        new.check()
        self._put_client(txn, new)
        audit.record(self.store, txn, "client", new.name, action, client.to_json(),
                     new.to_json())
        return new

    def _put_client(self, txn: Any, client: Client) -> None:
        from .notifications import watch

        self.store.clients.put(txn, _id_key(client.id), json.dumps(client.to_json()).encode())
        watch(self.store, txn, client)
        self.bump(txn)

    def add_client(self, client: Client, txn: Any = None) -> Client:
        """A new client (its ``id`` is assigned here); in ``txn`` when given (bulk loads)."""
        client.check()

        def apply(txn: Any) -> Client:
            if self.store.client_names.get(txn, client.name.encode()) is not None:
                raise Conflict(f"a client named {client.name!r} already exists")
            last = self.store.clients.last(txn)
            now = int(time.time())
            new = replace(client, id=(int.from_bytes(last, "big") + 1) if last else 1,
                          created=now, updated=now)
            self._check_tables(txn, new)
            self._put_client(txn, new)
            self.store.client_names.put(txn, new.name.encode(), _id_key(new.id))
            audit.record(self.store, txn, "client", new.name, "add", None, new.to_json())
            return new

        return apply(txn) if txn is not None else self.store.write(apply)

    def edit_client(self, name: str, /, *, action: str = "edit", **changes: Any) -> Client:
        """Change some of a client's settings; ``name=`` renames it."""
        known = {f.name for f in fields(Client)} - {"id", "created", "updated"}
        unknown = set(changes) - known
        if unknown:
            raise InvalidArgument(f"no client setting {', '.join(sorted(unknown))}")

        def apply(txn: Any) -> Client:
            old = self.get_client(txn, name)
            new = replace(old, **changes, updated=int(time.time()))
            if new.to_json() == replace(old, updated=new.updated).to_json():
                raise InvalidArgument("nothing to change")
            new.check()
            if new.currency != old.currency:
                from .journal import has_entries

                if has_entries(self.store, txn, old.id):
                    raise Conflict(f"client {name} has journal entries in {old.currency}; "
                                   f"its currency cannot change")
            self._check_tables(txn, new)
            if new.name != old.name:
                if self.store.client_names.get(txn, new.name.encode()) is not None:
                    raise Conflict(f"a client named {new.name!r} already exists")
                self.store.client_names.delete(txn, old.name.encode())
                self.store.client_names.put(txn, new.name.encode(), _id_key(new.id))
            self._put_client(txn, new)
            audit.record(self.store, txn, "client", new.name, action, old.to_json(),
                         new.to_json())
            return new

        return self.store.write(apply)

    def delete_client(self, name: str) -> Client:
        """Mark a client deleted: its accounts stop matching; its history stays."""
        client = self.client(name)
        if client.status == "deleted":
            raise InvalidArgument(f"client {name} is already deleted")
        return self.edit_client(name, status="deleted", action="delete")

    # -- accounts

    def add_account(self, client_name: str, *, ip: str | None = None,
                    username: str | None = None, ani: str | None = None,
                    tech_prefix: str | None = None, rate_table: str | None = None,
                    dial_plan: DialPlan | None = None, password: str | None = None,
                    txn: Any = None) -> Account:
        """A new account of a client; in ``txn`` when given (bulk loads)."""
        check_identifiers(ip, username, ani, tech_prefix)
        if ip is not None:
            ip = normalise_ip(ip)
        if ani is not None:
            ani = dial_plan.to_e164(ani) if dial_plan else normalise_number(ani)

        def apply(txn: Any) -> Account:
            client = self.get_client(txn, client_name)
            if client.status == "deleted":
                raise Conflict(f"client {client_name} is deleted")
            # A counter, not the last id + 1: a deleted account's id is never given again.
            raw = self.store.meta.get(txn, b"last-account")
            last = self.store.accounts.last(txn)
            number = max(int(raw) if raw else 0, int.from_bytes(last, "big") if last else 0) + 1
            self.store.meta.put(txn, b"last-account", str(number).encode())
            account = Account(id=number,
                              client=client.id, ip=ip, username=username, ani=ani,
                              tech_prefix=tech_prefix, rate_table=rate_table,
                              dial_plan=dial_plan.to_json() if dial_plan else None,
                              created=int(time.time()),
                              password=None if password is None else hash_password(password))
            if rate_table is not None:
                self._check_tables(txn, replace(client, rate_tables=[[None, rate_table]],
                                                term_table=None))
            key = account.index_key()
            holder = self.store.identifiers.get(txn, key)
            if holder is not None:
                other = self.get_account(txn, int.from_bytes(holder, "big"))
                owner = self.client_by_id(txn, other.client)
                raise Conflict(f"{account.identifier()} already recognises account "
                               f"{other.id} of client {owner.name}",
                               hint=f"`rater account delete {other.id}` first")
            self.store.accounts.put(txn, _id_key(account.id),
                                    json.dumps(account.to_json()).encode())
            self.store.identifiers.put(txn, key, _id_key(account.id))
            self.bump(txn)
            audit.record(self.store, txn, "account", str(account.id), "add", None,
                         account.shown())
            return account

        return apply(txn) if txn is not None else self.store.write(apply)

    def delete_account(self, aid: int) -> Account:
        def apply(txn: Any) -> Account:
            account = self.get_account(txn, aid)
            self.store.accounts.delete(txn, _id_key(aid))
            self.store.identifiers.delete(txn, account.index_key())
            self.bump(txn)
            audit.record(self.store, txn, "account", str(aid), "delete", account.shown(),
                         None)
            return account

        return self.store.write(apply)

    # -- export

    def export_csv(self, balances: dict[int, tuple[int, int]] | None = None) -> str:
        """Every client as CSV (the Clients section's export), with balances when given."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["id", "name", "status", "currency", "mode", "credit_limit",
                    "live_balance", "fixed_balance", "rate_table", "term_table",
                    "payment_terms_days", "bill_by", "max_call_length", "capacity",
                    "timezone", "tags", "billing_email", "low_balance_threshold"])
        balances = balances or {}
        for c in sorted(self.clients(), key=lambda c: c.id):
            live, fixed = balances.get(c.id, (0, 0))
            w.writerow([c.id, c.name, c.status, c.currency, c.mode,
                        show_amount(c.credit_limit), show_amount(live), show_amount(fixed),
                        ";".join(f"{t}@{s}" if s is not None else t for s, t in c.rate_tables),
                        c.term_table or "", c.payment_terms_days, c.bill_by,
                        c.max_call_length, "" if c.capacity is None else c.capacity,
                        c.timezone, ";".join(c.tags), c.billing_email or "",
                        "" if c.low_balance_threshold is None
                        else show_amount(c.low_balance_threshold)])
        return buf.getvalue()


@dataclass
class Match:
    """An account matched to a call, or why none was."""

    account: Account | None
    client: Client | None
    #: Mismatch reason when no usable account matched (``no-account``, ``client-deleted``).
    reason: str | None
    #: The number as dialled, with the matched tech prefix cut.
    number: str


class AccountIndex:
    """An in-memory snapshot of every account, for matching many calls quickly."""

    def __init__(self, store: Store) -> None:
        self.store = store
        reg = Registry(store)
        with store.read() as txn:
            self.generation = reg.generation(txn)
            self.clients = {c.id: c for c in reg.iter_clients(txn)}
            self.client_by_name = {c.name: c for c in self.clients.values()}
            accounts = list(reg.iter_accounts(txn))
        self.by_username: dict[str, Account] = {}
        self.by_ani: dict[str, Account] = {}
        self.by_tech: dict[str, Account] = {}
        # (version, prefix length) -> network int -> [(tech prefix, account)], longest first
        nets: dict[tuple[int, int], dict[int, list[tuple[str, Account]]]] = {}
        for a in accounts:
            if a.username is not None:
                self.by_username[a.username] = a
            elif a.ani is not None:
                self.by_ani[a.ani] = a
            elif a.ip is not None:
                net = ipaddress.ip_network(a.ip)
                group = nets.setdefault((net.version, net.prefixlen), {})
                group.setdefault(int(net.network_address), []).append((a.tech_prefix or "", a))
            elif a.tech_prefix is not None:
                self.by_tech[a.tech_prefix] = a
        for group in nets.values():
            for lst in group.values():
                lst.sort(key=lambda p: -len(p[0]))
        #: Whether some IP account needs the number's tech prefix to match.
        self.has_tech_on_ip = any(t for g in nets.values() for lst in g.values() for t, _ in lst)
        self._nets = sorted(nets.items(), key=lambda kv: -kv[0][1])
        self._tech_lengths = sorted({len(t) for t in self.by_tech}, reverse=True)
        self._ip_cache: dict[str, list[tuple[str, Account]] | None] = {}
        self._plans: dict[int, DialPlan | None] = {a.id: a.plan for a in accounts}
        self._ani_plans = list(dict.fromkeys(p for a in self.by_ani.values()
                                             if (p := self._plans[a.id]) is not None))

    def client_named(self, name: str) -> Client:
        c = self.client_by_name.get(name)
        if c is None:
            raise UnknownClient(f"no client named {name!r}")
        return c

    def at_address(self, ip: str) -> Account | None:
        """An account of the longest block holding ``ip`` (its shortest tech prefix's)."""
        hits = self._ip_accounts(ip) if self._nets else None
        return hits[-1][1] if hits else None

    def stale(self) -> bool:
        with self.store.read() as txn:
            return Registry(self.store).generation(txn) != self.generation

    def plan(self, account: Account) -> DialPlan | None:
        return self._plans.get(account.id)

    def _ip_accounts(self, ip: str) -> list[tuple[str, Account]] | None:
        try:
            return self._ip_cache[ip]
        except KeyError:
            pass
        found = None
        try:
            addr = ipaddress.ip_address(ip.strip())
        except ValueError:
            addr = None
        if addr is not None:
            value = int(addr)
            bits = addr.max_prefixlen
            for (version, plen), group in self._nets:
                if version != addr.version:
                    continue
                hit = group.get(value >> (bits - plen) << (bits - plen))
                if hit is not None:
                    found = hit
                    break
        if len(self._ip_cache) < 100_000:
            self._ip_cache[ip] = found
        return found

    def _ani(self, ani: str) -> Account | None:
        a = self.by_ani.get(ani)
        if a is not None:
            return a
        try:
            a = self.by_ani.get(normalise_number(ani))
        except InvalidNumber:
            a = None
        # A switch sends the calling number in its own national format.
        for plan in self._ani_plans:
            if a is not None:
                break
            try:
                a = self.by_ani.get(plan.to_e164(ani))
            except InvalidNumber:
                continue
        return a

    def find(self, ip: str = "", username: str = "", ani: str = "",
             number: str = "") -> tuple[Account | None, str]:
        """The account a call belongs to (None), and the number with its tech prefix cut."""
        if username:
            a = self.by_username.get(username)
            if a is not None:
                return a, number
        if ani and self.by_ani:
            a = self._ani(ani)
            if a is not None:
                return a, number
        if ip and self._nets:
            candidates = self._ip_accounts(ip)
            if candidates is not None:
                for tech, a in candidates:
                    if number.startswith(tech):
                        return a, number[len(tech):]
        for n in self._tech_lengths:
            a = self.by_tech.get(number[:n])
            if a is not None:
                return a, number[n:]
        return None, number

    def client_of(self, account: Account) -> tuple[Client, str | None]:
        """The account's client, and why its calls cannot be billed (None: they can)."""
        client = self.clients[account.client]
        return client, "client-deleted" if client.status == "deleted" else None

    def match(self, ip: str = "", username: str = "", ani: str = "",
              number: str = "") -> Match:
        account, rest = self.find(ip, username, ani, number)
        if account is None:
            return Match(None, None, "no-account", rest)
        client, reason = self.client_of(account)
        return Match(account, client, reason, rest)

