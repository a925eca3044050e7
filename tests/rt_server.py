"""A real Request Tracker 5 for tests, from Debian's ``request-tracker5`` and ``rt5-db-sqlite``.

`RtServer` writes a site config into its own folder (``RT_SITE_CONFIG_DIR``: an SQLite
database there, no web path, mail to files only, the given time zone), initialises the database
(``rt-setup-database --action init --skip-create``, about 2 s), seeds it with one Perl script
(the integration user with the rights docs/connectors/request-tracker.md lists, a user with no
rights, their auth tokens, the global ``District Ticket`` and ``Category`` custom fields) and
starts the package's ``rt-server`` (about 2 s, two workers). ``../shared/REAL_SYSTEMS.md``
explains the steps; ``.ci/run`` installs the packages.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

RT_LIB = Path("/usr/share/request-tracker5/lib")
RT_SERVER = Path("/usr/share/request-tracker5/libexec/rt-server")
RT_SETUP = Path("/usr/sbin/rt-setup-database")

#: The integration user's rights, granted globally; the docs list the same.
RIGHTS = (
    "SeeQueue",
    "ShowTicket",
    "CreateTicket",
    "ModifyTicket",
    "CommentOnTicket",
    "ReplyToTicket",
    "ShowTicketComments",
    "SeeCustomField",
    "ModifyCustomField",
)

SEED = r"""
use strict; use warnings;
use JSON ();
use RT; RT::LoadConfig(); RT::Init();
my %out;
sub user {
    my ($name, $email, @rights) = @_;
    my $user = RT::User->new(RT->SystemUser);
    my ($id, $msg) = $user->Create(Name => $name, EmailAddress => $email, Privileged => 1,
                                   Password => "$name-password-1");
    die "user $name: $msg" unless $id;
    for my $right (@rights) {
        my ($ok, $why) = $user->PrincipalObj->GrantRight(Right => $right, Object => RT->System);
        die "grant $right: $why" unless $ok;
    }
    return $user;
}
sub token {
    my $user = shift;
    my $token = RT::AuthToken->new(RT->SystemUser);
    my ($ok, $msg, $string) = $token->Create(Owner => $user->Id, Description => 'cohub tests');
    die "token: $msg" unless $ok;
    return $string;
}
my $root = RT::User->new(RT->SystemUser); $root->Load('root');
$out{root} = token($root);
$out{cohub} = token(user('cohub', 'cohub@cohub.test', split / /, $ARGV[0]));
$out{noright} = token(user('noright', 'noright@cohub.test'));
for my $name ('District Ticket', 'Category') {
    my $cf = RT::CustomField->new(RT->SystemUser);
    my ($id, $msg) = $cf->Create(Name => $name, Type => 'FreeformSingle',
                                 LookupType => 'RT::Queue-RT::Ticket');
    die "custom field $name: $msg" unless $id;
    my $everywhere = RT::Queue->new(RT->SystemUser);  # id 0: applies to every queue
    my ($ok, $why) = $cf->AddToObject($everywhere);
    die "apply $name: $why" unless $ok;
}
print JSON::encode_json(\%out);
"""


def installed() -> bool:
    """Whether Debian's Request Tracker 5 packages are here."""
    return RT_SERVER.exists() and RT_SETUP.exists() and shutil.which("perl") is not None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RtServer:
    """One Request Tracker on a free loopback port, its database and config in `folder`."""

    def __init__(self, folder: Path, timezone: str = "UTC") -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.env = {**os.environ, "RT_SITE_CONFIG_DIR": str(folder / "site")}
        self._configure(timezone)
        self._run([str(RT_SETUP), "--action", "init", "--skip-create"])
        self.tokens: dict[str, str] = json.loads(
            self._run(["perl", f"-I{RT_LIB}", "-e", SEED, " ".join(RIGHTS)])
        )
        self.log = open(folder / "rt-server.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(RT_SERVER), "--host", "127.0.0.1", "--port", str(self.port), "--max-workers", "2"],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait()

    def _configure(self, timezone: str) -> None:
        site = self.folder / "site"
        site.mkdir(parents=True)
        (site / "cohub-test.pm").write_text(
            "Set($rtname, 'cohub-test');\n"
            "Set($Organization, 'cohub.test');\n"
            "Set($DatabaseType, 'SQLite');\n"
            f"Set($DatabaseName, '{self.folder / 'rt.db'}');\n"
            "Set($WebPath, '');\n"
            "Set($WebDomain, '127.0.0.1');\n"
            f"Set($WebPort, {self.port});\n"
            f"Set($WebBaseURL, 'http://127.0.0.1:{self.port}');\n"
            "Set($MailCommand, 'testfile');\n"
            "Set($LogToSyslog, undef);\n"
            "Set($LogToSTDERR, 'error');\n"
            f"Set($Timezone, '{timezone}');\n"
            "1;\n"
        )

    def _run(self, command: list[str]) -> str:
        done = subprocess.run(command, env=self.env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def _wait(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"rt-server exited: {(self.folder / 'rt-server.log').read_text()}"
                )
            try:
                urllib.request.urlopen(self.url + "REST/2.0/rt", timeout=2)
                return
            except urllib.error.HTTPError:
                return  # 401 without credentials: RT answers
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("rt-server did not answer within 60 s")

    def call(self, method: str, path: str, body: Any = None, *, user: str = "root") -> Any:
        """One REST2 call as `user` (root by default), for arranging test data; the JSON."""
        request = urllib.request.Request(
            self.url + "REST/2.0/" + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"token {self.tokens[user]}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read() or b"null")

    def stop(self) -> None:
        """SIGTERM to the master (SIGINT would make it chown its files recursively)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()
