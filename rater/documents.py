"""What a bill run hands over: invoice PDFs, CSV exports and the control report.

An invoice's PDF is rendered from the package's HTML template
(``templates/invoice.html``, with the facts and columns of the client's
``invoice_template``: ``default`` or ``extended``) by WeasyPrint, which draws
text with Pango and embeds fonts with HarfBuzz: on Debian, libpango-1.0-0,
libpangoft2-1.0-0, libharfbuzz-subset0 and a font (fonts-dejavu-core).
Rendering takes most of a run's time, so a run renders in parallel processes.
"""

from __future__ import annotations

import csv
import functools
import html
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from decimal import Decimal
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from .errors import RenderError
from .files import replacing
from .invoices import Invoice, Issuer

DEBIAN_PACKAGES = "libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core"


@functools.cache
def _template() -> Template:
    return Template(resources.files("rater").joinpath("templates/invoice.html").read_text(
        encoding="utf-8"))


#: What each invoice template adds to the page: facts, line columns.
_EXTENDED_FACTS = ("<tr><td>Client account</td><td>$client_id</td></tr>\n"
                   "<tr><td>Subtotal before tax</td><td>$subtotal</td></tr>\n"
                   "<tr><td>Tax</td><td>$tax</td></tr>\n")
_HEADS = {"default": ("Description", "Calls", "Minutes", "Amount"),
          "extended": ("Kind", "Description", "Calls", "Minutes", "Exact sum", "Amount")}


def minutes(seconds: int) -> str:
    """Seconds as minutes with 2 decimals, rounded half-up (integers, never a float)."""
    hundredths = (seconds * 100 + 30) // 60
    return f"{hundredths // 100}.{hundredths % 100:02d}"


def invoice_html(inv: Invoice, issuer: Issuer) -> str:
    """The invoice as an HTML page, from its template (every value escaped)."""
    e = html.escape
    extended = inv.template == "extended"
    rows = []
    for ln in inv.lines:
        usage = ln.kind in ("usage", "late")
        text = [e(ln.kind), e(ln.description)] if extended else [e(ln.description)]
        numbers = [str(ln.calls) if usage else "", minutes(ln.seconds) if usage else ""]
        if extended:
            numbers.append("" if ln.exact is None else inv.money(ln.exact))
        numbers.append(inv.money(ln.amount))
        rows.append("<tr>" + "".join(f"<td>{t}</td>" for t in text)
                    + "".join(f'<td class="n">{n}</td>' for n in numbers) + "</tr>")
    details = inv.details
    notes = []
    if details.get("reverse_charge"):
        notes.append("Reverse charge: the client accounts for the VAT (Article 196, "
                     "Directive 2006/112/EC).")
    mandate = details.get("sepa_mandate")
    if mandate and inv.due > 0:
        notes.append(f"The amount due is collected by SEPA Direct Debit from "
                     f"{mandate['iban'][:4]}…{mandate['iban'][-4:]}, mandate "
                     f"{mandate['id']} of {mandate['date']}.")
    kind = "Credit note" if inv.kind == "credit-note" else "Invoice"
    values = {
        "title": e(f"{kind} {inv.name}"), "heading": kind,
        "number": e(inv.number or f"(draft #{inv.id}: to verify)"),
        "issuer_name": e(issuer.name), "issuer_address": e(issuer.address),
        "issuer_vat": e(f"VAT id {issuer.vat_id}" if issuer.vat_id else ""),
        "client_name": e(inv.client_name), "client_id": str(inv.client),
        "client_address": e(details.get("address") or ""),
        "client_vat": e(f"VAT id {details['vat_id']}" if details.get("vat_id") else ""),
        "period_first": inv.start_date, "period_last": inv.last_day,
        "issue_date": inv.issue_date or "(not issued)",
        "due_date": inv.due_date or "(not issued)", "currency": e(inv.currency),
        "lines": "\n".join(rows), "subtotal": inv.money(inv.subtotal),
        "tax": inv.money(inv.tax), "total": inv.money(inv.total),
        "previous": inv.money(inv.previous), "payments": inv.money(inv.payments),
        "due": inv.money(inv.due),
        "notes": "".join(f'<p class="note">{e(n)}</p>' for n in notes),
    }
    heads = _HEADS[inv.template]
    text_columns = 2 if extended else 1
    values["line_head"] = "".join(f"<th>{h}</th>" if i < text_columns else
                                  f'<th class="n">{h}</th>' for i, h in enumerate(heads))
    values["total_span"] = str(len(heads) - 1)
    values["more_facts"] = Template(_EXTENDED_FACTS).substitute(values) if extended else ""
    return _template().substitute(values)


def check_renderer() -> None:
    """Raise a RenderError naming what to install when WeasyPrint cannot run here."""
    try:
        import weasyprint  # noqa: F401
    except ImportError:
        raise RenderError("PDF invoices need WeasyPrint", hint="pip install weasyprint") \
            from None
    except OSError as exc:
        raise RenderError(f"WeasyPrint cannot load Pango: {exc}",
                          hint=f"apt-get install {DEBIAN_PACKAGES}") from None


def render_pdf(page: str, target: Path) -> Path:
    """Render an HTML page to a PDF file (written beside, then moved into place)."""
    check_renderer()
    import weasyprint

    with replacing(target) as f:
        weasyprint.HTML(string=page).write_pdf(f)
    return target


def _render_one(job: tuple[int, str, str]) -> tuple[int, str | None, str | None]:
    iid, page, target = job
    try:
        return iid, str(render_pdf(page, Path(target))), None
    except Exception as exc:             # one invoice's failure is that invoice's
        return iid, None, f"{type(exc).__name__}: {exc}"


def render_many(jobs: Sequence[tuple[int, str, str]], processes: int | None = None
                ) -> Iterable[tuple[int, str | None, str | None]]:
    """(invoice id, html, target) -> (invoice id, path or None, error or None), rendered
    in ``processes`` processes (default: one per core)."""
    processes = processes or os.cpu_count() or 1
    if processes == 1 or len(jobs) < 2:
        yield from map(_render_one, jobs)
        return
    with ProcessPoolExecutor(processes) as pool:
        yield from pool.map(_render_one, jobs, chunksize=max(1, len(jobs) // (processes * 8)))


def safe_name(text: str) -> str:
    """A file name from an invoice number (its / and the like turned into -)."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)


# -- exports

INVOICE_CSV = ("id", "number", "client_id", "client", "period", "start", "end", "state",
               "issuer", "issue_date", "due_date", "currency", "subtotal", "tax", "total",
               "previous_balance", "payments", "amount_due", "pdf")
LINE_CSV = ("invoice_id", "number", "client", "position", "kind", "description",
            "destination", "calls", "minutes", "exact", "amount")


def write_csv(path: Path, invoices: Sequence[Invoice]) -> None:
    """invoices.csv at ``path``."""
    with replacing(path, text=True) as f:
        w = csv.writer(f)
        w.writerow(INVOICE_CSV)
        for inv in invoices:
            j = inv.to_json()
            w.writerow([inv.id, inv.number or "", inv.client, inv.client_name, inv.period,
                        j["start"], j["end"], j["state"], inv.issuer, inv.issue_date or "",
                        inv.due_date or "", inv.currency, j["subtotal"], j["tax"], j["total"],
                        j["previous_balance"], j["payments"], j["amount_due"], inv.pdf or ""])


def write_lines_csv(path: Path, invoices: Sequence[Invoice]) -> None:
    """invoice-lines.csv at ``path`` (the invoices must carry their lines)."""
    with replacing(path, text=True) as f:
        w = csv.writer(f)
        w.writerow(LINE_CSV)
        for inv in invoices:
            for i, ln in enumerate(inv.lines):
                w.writerow([inv.id, inv.number or "", inv.client_name, i + 1, ln.kind,
                            ln.description, ln.destination or "", ln.calls,
                            minutes(ln.seconds), "" if ln.exact is None else
                            inv.money(ln.exact), inv.money(ln.amount)])


CONTROL_COLUMNS = ("Invoice number", "Account", "Client", "Currency", "Total billed",
                   "Net payable", "One-off items", "Recurring items", "Consumption",
                   "Prorated amount", "Previous invoice amount", "State")


def control_rows(invoices: Sequence[Invoice], previous_totals: dict[int, int]
                 ) -> list[list[Any]]:
    """One row per invoice; amounts as Decimals of the currency's decimals."""
    rows = []
    for inv in invoices:
        def kind_sum(*kinds: str, inv: Invoice = inv) -> Decimal:
            return Decimal(inv.money(sum(ln.amount for ln in inv.lines if ln.kind in kinds)))

        previous = previous_totals.get(inv.previous_invoice or 0, 0)
        rows.append([inv.number or f"draft #{inv.id}", inv.client, inv.client_name,
                     inv.currency, Decimal(inv.money(inv.total)), Decimal(inv.money(inv.due)),
                     kind_sum("one-off"), kind_sum("recurring"), kind_sum("usage", "late"),
                     kind_sum("prorated"), Decimal(inv.money(previous)), inv.shown_state])
    return rows


def write_control_report(path: Path, title: str, rows: list[list[Any]]) -> None:
    """The billing control report (XLSX): a row per invoice, then totals per currency."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("Control report")
    ws.append([title])
    ws.append(list(CONTROL_COLUMNS))
    totals: dict[str, list[Decimal]] = {}
    for r in rows:
        # Decimals stay exact: openpyxl writes a Decimal's own digits into the sheet.
        ws.append(r)
        sums = totals.setdefault(r[3], [Decimal(0)] * 7)
        for i in range(7):
            sums[i] += r[4 + i]
    for currency, sums in sorted(totals.items()):
        ws.append(["Total", None, None, currency, *sums, None])
    with replacing(path) as f:
        wb.save(f)
