"""SEPA Direct Debit: the pain.008 message that collects issued invoices.

One ISO 20022 ``pain.008.001.08`` CustomerDirectDebitInitiation per issuer (the
version of the EPC SDD Core rulebook since November 2023), one payment
information block per collection date (the invoices' due date), one
transaction per invoice: what it collects (:func:`collected`), its number as
end-to-end id, the client's mandate (reference and date signed), IBAN and BIC.
Only invoices in euro of clients with a mandate are collected.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from xml.etree import ElementTree as ET

from .errors import InvoiceError
from .invoices import Invoice, Issuer

NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:pain.008.001.08"


def collected(inv: Invoice) -> int:
    """What a direct debit collects for an invoice: its total, or its amount due when
    less (a credit carried in); not the previous balance, which the previous invoice's
    collection asked for. 0: not collected (not euro, no mandate, nothing owed)."""
    if not (inv.kind == "invoice" and inv.state == "issued" and inv.currency == "EUR"
            and inv.details.get("sepa_mandate")):
        return 0
    return max(0, min(inv.total, inv.due))


def _text(value: str, limit: int) -> str:
    """SEPA's restricted Latin set (EPC guidance), cut to ``limit`` characters."""
    cleaned = re.sub(r"[^A-Za-z0-9/?:().,'+ -]", " ", value)
    return re.sub(r"\s+", " ", cleaned).strip()[:limit] or "-"


def _add(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def _agent(parent: ET.Element, tag: str, bic: str) -> None:
    _add(_add(_add(parent, tag), "FinInstnId"), "BICFI", bic)


def _account(parent: ET.Element, tag: str, iban: str) -> None:
    _add(_add(_add(parent, tag), "Id"), "IBAN", iban)


def direct_debit(issuer: Issuer, invoices: Sequence[Invoice], message_id: str,
                 now: datetime) -> bytes:
    """The pain.008 XML collecting ``invoices`` (each :func:`collected` above 0) for
    ``issuer``, which needs its creditor id, IBAN and BIC."""
    missing = [what for what, value in (("creditor id", issuer.creditor_id),
                                        ("IBAN", issuer.iban), ("BIC", issuer.bic)) if not value]
    if missing:
        raise InvoiceError(f"issuer {issuer.name} has no SEPA {', '.join(missing)}",
                           hint=f"rater issuer edit '{issuer.name}' --creditor-id ... "
                                f"--iban ... --bic ...")
    assert issuer.creditor_id and issuer.iban and issuer.bic
    ET.register_namespace("", NAMESPACE)
    doc = ET.Element(f"{{{NAMESPACE}}}Document")
    root = _add(doc, "CstmrDrctDbtInitn")
    head = _add(root, "GrpHdr")
    _add(head, "MsgId", _text(message_id, 35))
    _add(head, "CreDtTm", now.replace(microsecond=0).isoformat())
    _add(head, "NbOfTxs", str(len(invoices)))
    _add(head, "CtrlSum", str(sum((Decimal(i.money(collected(i))) for i in invoices),
                                  Decimal(0))))
    _add(_add(head, "InitgPty"), "Nm", _text(issuer.name, 70))
    by_date: dict[str, list[Invoice]] = {}
    for inv in invoices:
        by_date.setdefault(inv.due_date or "", []).append(inv)
    for k, (day, batch) in enumerate(sorted(by_date.items()), 1):
        info = _add(root, "PmtInf")
        _add(info, "PmtInfId", _text(f"{message_id}-{k}", 35))
        _add(info, "PmtMtd", "DD")
        _add(info, "NbOfTxs", str(len(batch)))
        _add(info, "CtrlSum", str(sum((Decimal(i.money(collected(i))) for i in batch),
                                      Decimal(0))))
        kind = _add(info, "PmtTpInf")
        _add(_add(kind, "SvcLvl"), "Cd", "SEPA")
        _add(_add(kind, "LclInstrm"), "Cd", "CORE")
        # RCUR for every collection: the rulebook has not required FRST since 2016.
        _add(kind, "SeqTp", "RCUR")
        _add(info, "ReqdColltnDt", day)
        _add(_add(info, "Cdtr"), "Nm", _text(issuer.name, 70))
        _account(info, "CdtrAcct", issuer.iban)
        _agent(info, "CdtrAgt", issuer.bic)
        _add(info, "ChrgBr", "SLEV")
        other = _add(_add(_add(_add(info, "CdtrSchmeId"), "Id"), "PrvtId"), "Othr")
        _add(other, "Id", issuer.creditor_id)
        _add(_add(other, "SchmeNm"), "Prtry", "SEPA")
        for inv in batch:
            mandate = inv.details["sepa_mandate"]
            tx = _add(info, "DrctDbtTxInf")
            _add(_add(tx, "PmtId"), "EndToEndId", _text(inv.number or str(inv.id), 35))
            _add(tx, "InstdAmt", inv.money(collected(inv)), Ccy=inv.currency)
            signed = _add(_add(tx, "DrctDbtTx"), "MndtRltdInf")
            _add(signed, "MndtId", mandate["id"])
            _add(signed, "DtOfSgntr", mandate["date"])
            _agent(tx, "DbtrAgt", mandate["bic"])
            _add(_add(tx, "Dbtr"), "Nm", _text(inv.client_name, 70))
            _account(tx, "DbtrAcct", mandate["iban"])
            _add(_add(tx, "RmtInf"), "Ustrd",
                 _text(f"Invoice {inv.number} of {inv.issue_date}", 140))
    ET.indent(doc)
    xml: bytes = ET.tostring(doc, encoding="UTF-8", xml_declaration=True)
    return xml
