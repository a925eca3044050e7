"""A real Tryton 8.2 server for tests: a cached virtualenv, a seeded template database, one
server per test on a copy of it.

The virtualenv (``trytond``, ``trytond-account``, ``trytond-purchase`` and ``proteus`` at pinned
versions) and the initialised template ``.sqlite`` are kept under `cache_dir` (by default
``tests/.tryton/``, which git ignores), so only the first run on a machine pays for the install
(about 10 s) and the initialisation (about 30 s). ``../shared/REAL_SYSTEMS.md`` explains the
steps followed here.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PINS = (
    "trytond==8.2.1",
    "trytond-account==8.2.1",
    "trytond-purchase==8.2.0",
    "proteus==8.2.0",
)
DATABASE = "cohub"
ADMIN_PASSWORD = "admin-password-1"
#: A user with no access group: Tryton refuses it purchases.
NORIGHT_LOGIN = "noright"
NORIGHT_PASSWORD = "noright-password-1"

#: Run by the Tryton virtualenv's Python with proteus on the template database: a company with
#: a fiscal year and a chart of accounts, NCES-coded expense accounts, two suppliers, posted
#: journal moves, supplier invoices and purchases.
SEED = r"""
import datetime as dt
import sys
from decimal import Decimal

from proteus import Model, Wizard, config as pconfig

config = pconfig.set_trytond(sys.argv[1], config_file=sys.argv[2])

from trytond.modules.company.tests.tools import create_company, get_company
from trytond.modules.account.tests.tools import create_fiscalyear, create_chart, get_accounts
from trytond.modules.account_invoice.tests.tools import set_fiscalyear_invoice_sequences

create_company()
company = get_company()
today = dt.date(2026, 10, 1)
fiscalyear = set_fiscalyear_invoice_sequences(create_fiscalyear(company, today=today))
fiscalyear.click("create_period")
create_chart(company)
accounts = get_accounts(company)
expense, payable = accounts["expense"], accounts["payable"]

Account = Model.get("account.account")
coded = {}
for code, name in [
    ("A2110.150", "Instructional salaries"),
    ("A2110.450", "Instructional supplies"),
    ("A1620.400", "Operation of plant, contractual"),
]:
    account = Account(name=name, code=code, type=expense.type, parent=expense.parent)
    account.save()
    coded[code] = account
expense.code = "A9999.999"
expense.save()

Party = Model.get("party.party")
suppliers = []
for code, name, street in [
    ("V100", "Acme School Supply", "1 Main St"),
    ("V200", "Northway Facilities", "22 River Rd"),
]:
    party = Party(code=code, name=name)
    party.addresses[0].street = street
    party.addresses[0].city = "Albany"
    mechanism = party.contact_mechanisms.new(type="email", value=f"ap@{code.lower()}.example")
    party.save()
    suppliers.append(party)

Journal = Model.get("account.journal")
Move = Model.get("account.move")
journal, = Journal.find([("code", "=", "EXP")])
for day, code, amount in [(2, "A2110.150", "1200.50"), (3, "A2110.450", "310.25")]:
    move = Move(journal=journal, date=dt.date(2026, 10, day), description=f"Accrual {code}")
    debit = move.lines.new(account=coded[code], debit=Decimal(amount), description="expense")
    credit = move.lines.new(account=payable, credit=Decimal(amount), party=suppliers[0])
    move.save()
    move.click("post")

Invoice = Model.get("account.invoice")
for number, party, price in [("INV-1", suppliers[0], "99.90"), ("INV-2", suppliers[1], "45.00")]:
    invoice = Invoice(type="in", party=party, invoice_date=dt.date(2026, 10, 5), reference=number)
    line = invoice.lines.new()
    line.account = coded["A2110.450"]
    line.description = "Paper"
    line.quantity = 3
    line.unit_price = Decimal(price)
    invoice.save()
    if number == "INV-1":
        invoice.click("post")

Purchase = Model.get("purchase.purchase")
for party, price in [(suppliers[0], "12.50"), (suppliers[1], "400.00")]:
    purchase = Purchase(party=party, purchase_date=dt.date(2026, 10, 7))
    line = purchase.lines.new()
    line.description = "Toner"
    line.quantity = 4
    line.unit_price = Decimal(price)
    purchase.save()
    purchase.click("quote")

User = Model.get("res.user")
user = User(name="No right", login="@LOGIN@", password="@PASSWORD@")
user.groups.clear()
user.save()
print("seeded")
""".replace("@LOGIN@", NORIGHT_LOGIN).replace("@PASSWORD@", NORIGHT_PASSWORD)


class TrytonUnavailable(RuntimeError):
    """Tryton's packages cannot be installed here (no package registry)."""


def default_cache_dir() -> Path:
    return Path(os.environ.get("COHUB_TRYTON_CACHE", Path(__file__).parent.parent / ".tryton"))


def _fingerprint() -> str:
    return hashlib.sha256(("\n".join(PINS) + SEED).encode()).hexdigest()[:12]


def ensure_venv(cache: Path) -> Path:
    """The Python of a virtualenv with the pinned Tryton packages, created on first use."""
    venv = cache / ("venv-" + hashlib.sha256("\n".join(PINS).encode()).hexdigest()[:12])
    python = venv / "bin" / "python"
    if (venv / "ready").exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PINS],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        raise TrytonUnavailable(f"pip install {' '.join(PINS)} failed: {done.stderr[-600:]}")
    (venv / "ready").touch()
    return python


def _write_config(folder: Path) -> Path:
    conf = folder / "trytond.conf"
    conf.write_text(f"[database]\nuri = sqlite://\npath = {folder}\n")
    return conf


def ensure_template(cache: Path, python: Path) -> Path:
    """The seeded template database file, initialised on first use."""
    folder = cache / ("template-" + _fingerprint())
    template = folder / f"{DATABASE}.sqlite"
    if (folder / "ready").exists():
        return template
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    conf = _write_config(folder)
    template.touch()
    passfile = folder / "admin-password"
    passfile.write_text(ADMIN_PASSWORD)
    bindir = python.parent
    env = {**os.environ, "TRYTONPASSFILE": str(passfile)}
    subprocess.run(
        [str(bindir / "trytond-admin"), "-c", str(conf), "-d", DATABASE, "--all", "-u",
         "account", "purchase", "--activate-dependencies", "--email", "admin@example.com", "-p"],
        stdin=subprocess.DEVNULL, env=env, check=True, capture_output=True,
    )  # fmt: skip
    seed = folder / "seed.py"
    seed.write_text(SEED)
    done = subprocess.run(
        [str(python), str(seed), DATABASE, str(conf)], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"seeding the Tryton template failed:\n{done.stderr[-3000:]}")
    (folder / "ready").touch()
    return template


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TrytonServer:
    """One ``trytond`` on a free port serving a copy of the template in `folder`."""

    def __init__(self, python: Path, template: Path, folder: Path) -> None:
        self.folder = folder
        self.database_file = folder / f"{DATABASE}.sqlite"
        shutil.copyfile(template, self.database_file)
        self.conf = _write_config(folder)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        env = {**os.environ, "TRYTOND_WEB__LISTEN": f"127.0.0.1:{self.port}"}
        self.log = open(folder / "trytond.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(python.parent / "trytond"), "-c", str(self.conf), "-d", DATABASE],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + 30
        body = b'{"id": 1, "method": "common.server.version", "params": []}'
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"trytond exited: {(self.folder / 'trytond.log').read_text()}")
            try:
                request = urllib.request.Request(
                    self.url + "rpc/", data=body, headers={"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(request, timeout=2):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("trytond did not answer within 30 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
