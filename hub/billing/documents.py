"""A statement as documents: CSV and JSON rows, table cells, and a printable HTML page (the
CLI writes them to files; the console and API offer them for download)."""

from __future__ import annotations

import html

from hub.billing.plans import POOL_METHODS
from hub.billing.statements import Statement, StatementLine


def statement_rows(statement: Statement) -> list[dict[str, str]]:
    return [
        {
            "period": statement.period,
            "member": statement.member,
            "service": line.service,
            "coser": line.coser or "",
            "month": line.month,
            "kind": line.kind,
            "adjusts": line.adjusts,
            "method": line.method,
            "meter": line.meter or "",
            "quantity": "" if line.quantity is None else str(line.quantity),
            "unit": line.unit,
            "rate": "" if line.rate is None else str(line.rate),
            "amount": str(line.amount),
        }
        for line in statement.lines
    ]


def line_cells(line: StatementLine) -> tuple[str, ...]:
    """A statement line's cells as the table and the HTML page show them."""
    if line.rate is None:
        rate = ""
    elif line.method in POOL_METHODS:
        rate = f"{line.rate * 100:.4f} %"  # a share of the pool
    else:
        rate = f"{line.rate:,f}"
    return (
        line.service,
        line.coser or "",
        line.month,
        line.label,
        line.meter or "",
        "" if line.quantity is None else f"{line.quantity.normalize():,f}",
        rate,
        f"{line.amount:,.2f}",
    )


def statements_html(found: list[Statement], cooperative_name: str) -> str:
    """Printable statements, one page per member, for a business official's files."""
    pages = []
    for statement in found:
        rows = "".join(
            "<tr>"
            + "".join(
                f"<td class={'num' if i >= 5 else 'txt'}>{html.escape(cell)}</td>"
                for i, cell in enumerate(line_cells(line))
            )
            + "</tr>"
            for line in statement.lines
        )
        pages.append(
            f"""<section>
<h1>{html.escape(cooperative_name)}</h1>
<h2>Statement for {html.escape(statement.member_name)} ({html.escape(statement.member)})</h2>
<p>Period {html.escape(statement.period)}</p>
<table>
<thead><tr><th>Service</th><th>CoSer</th><th>Month</th><th>Line</th><th>Meter</th>
<th>Quantity</th><th>Rate / share</th><th>Amount</th></tr></thead>
<tbody>{rows}</tbody>
<tfoot><tr><th colspan=7>Total due</th><td class=num>{statement.total:,.2f}</td></tr></tfoot>
</table>
<p class=fp>Inputs fingerprint {statement.fingerprint}</p>
</section>"""
        )
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><title>Statements</title>
<style>
body {{ font: 11pt/1.4 system-ui, sans-serif; margin: 2em; }}
section {{ page-break-after: always; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border-bottom: 1px solid #999; padding: 0.3em 0.5em; text-align: left; }}
.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.fp {{ color: #555; font-size: 8pt; }}
</style></head><body>
{"".join(pages)}
</body></html>
"""
