"""A Dovecot of a test's own that logs users in by OAuth2 only, and the identity provider it
asks: a token endpoint issuing short-lived tokens and an introspection endpoint answering
whether a token is active. Both are real servers on 127.0.0.1; the provider counts what it
was asked, so tests judge retries by what reached it."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"
START_TIMEOUT_SECONDS = 20.0


@dataclass
class IdentityProvider:
    """Issues access tokens by refresh token or client credentials; introspects them."""

    username: str
    client_id: str = "triage-test-client"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    refresh_token: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    lifetime_seconds: float = 3600.0
    refuse_grants: bool = False
    grants: list[dict[str, str]] = field(default_factory=list)
    introspected: list[tuple[str, bool]] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    revoked_all: bool = False
    _expiry: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def issue(self) -> str:
        """A fresh valid token, as a mail client of the test would hold."""
        token = f"at-{secrets.token_urlsafe(16)}"
        with self._lock:
            self._expiry[token] = time.monotonic() + self.lifetime_seconds
        return token

    def active(self, token: str) -> bool:
        """Whether ``token`` was issued here, is not revoked and has not expired."""
        with self._lock:
            expiry = self._expiry.get(token)
        if expiry is None or self.revoked_all or token in self.revoked:
            return False
        return time.monotonic() < expiry

    def refused_logins(self) -> int:
        """Introspections answered inactive: logins the IMAP server refused."""
        return sum(1 for _, active in self.introspected if not active)

    def _grant(self, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        with self._lock:
            self.grants.append(form)
        if self.refuse_grants:
            return 400, {"error": "invalid_grant", "error_description": "refresh token revoked"}
        if form.get("client_id") != self.client_id:
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") == "refresh_token":
            if form.get("refresh_token") != self.refresh_token:
                return 400, {"error": "invalid_grant"}
        elif form.get("grant_type") == "client_credentials":
            if form.get("client_secret") != self.client_secret:
                return 401, {"error": "invalid_client"}
        else:
            return 400, {"error": "unsupported_grant_type"}
        return 200, {
            "access_token": self.issue(),
            "token_type": "Bearer",
            "expires_in": self.lifetime_seconds,
        }

    def _introspect(self, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        token = form.get("token", "")
        active = self.active(token)
        with self._lock:
            self.introspected.append((token, active))
        if not active:
            return 200, {"active": False}
        return 200, {"active": True, "username": self.username}

    @contextmanager
    def serving(self) -> Iterator[IdentityProvider]:
        """Serve /token and /introspect on a free port of 127.0.0.1."""
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                form = {key: values[0] for key, values in parse_qs(raw).items()}
                if self.path == "/token":
                    status, body = provider._grant(form)
                elif self.path == "/introspect":
                    status, body = provider._introspect(form)
                else:
                    status, body = 404, {"error": "not_found"}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()


@dataclass(frozen=True)
class OAuthImapServer:
    """The Dovecot instance: plain IMAP on 127.0.0.1:port, XOAUTH2 and OAUTHBEARER only."""

    port: int
    user: str
    directory: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _os_users() -> tuple[str, str, str]:
    """Internal, login and mail OS users, as deploy/local/lib/imap.sh chooses them."""
    if os.geteuid() == 0:
        return "dovecot", "dovenull", "nobody"
    import pwd

    me = pwd.getpwuid(os.getuid()).pw_name
    return me, me, me


def _config(directory: Path, *, port: int, introspection_url: str, users_file: Path) -> str:
    import grp
    import pwd

    internal, login, mail = _os_users()
    mail_uid = pwd.getpwnam(mail).pw_uid
    mail_gid = pwd.getpwnam(mail).pw_gid
    internal_group = grp.getgrgid(pwd.getpwnam(internal).pw_gid).gr_name
    rootless = os.geteuid() != 0
    no_chroot = "\n  chroot =" if rootless else ""
    auth_worker = "service auth-worker {\n  user = $default_internal_user\n}\n" if rootless else ""
    oauth2_conf = directory / "dovecot-oauth2.conf.ext"
    oauth2_conf.write_text(
        f"introspection_mode = post\n"
        f"introspection_url = {introspection_url}\n"
        "username_attribute = username\n"
        "active_attribute = active\n"
        "active_value = true\n"
    )
    oauth2_conf.chmod(0o644)
    return f"""
instance_name = triage-oauth-{directory.name}
base_dir = {directory}/run
state_dir = {directory}/state
log_path = {directory}/dovecot.log
protocols = imap
listen = 127.0.0.1
shutdown_clients = yes
default_internal_user = {internal}
default_internal_group = {internal_group}
default_login_user = {login}
first_valid_uid = {mail_uid}
last_valid_uid = {mail_uid}
first_valid_gid = {mail_gid}
last_valid_gid = {mail_gid}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = xoauth2 oauthbearer
auth_verbose = yes
auth_failure_delay = 0
auth_cache_size = 0
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {oauth2_conf}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {users_file}
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
}}
protocol imap {{
  mail_max_userip_connections = 100
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}{no_chroot}
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}{no_chroot}
}}
{auth_worker}"""


@contextmanager
def oauth_dovecot(provider: IdentityProvider) -> Iterator[OAuthImapServer]:
    """Start a Dovecot of its own that checks tokens at ``provider``; stop it afterwards."""
    import pwd

    _, _, mail = _os_users()
    mail_user = pwd.getpwnam(mail)
    # Short and reachable by Dovecot's unprivileged users (pytest's tmp dirs are private).
    directory = Path(tempfile.mkdtemp(prefix="tro-", dir="/tmp"))
    directory.chmod(0o755)
    home = directory / "mail" / provider.username
    home.mkdir(parents=True)
    (directory / "state").mkdir()
    if os.geteuid() == 0:
        os.chown(home, mail_user.pw_uid, mail_user.pw_gid)
    users_file = directory / "users"
    users_file.write_text(f"{provider.username}::{mail_user.pw_uid}:{mail_user.pw_gid}::{home}\n")
    users_file.chmod(0o644)
    port = _free_port()
    conf = directory / "dovecot.conf"
    conf.write_text(
        _config(
            directory,
            port=port,
            introspection_url=f"{provider.url}/introspect",
            users_file=users_file,
        )
    )
    out = directory / "dovecot.out"
    pid_file = directory / "run" / "master.pid"
    try:
        # The master daemonises; its early errors go to dovecot.out (a pipe would stay open).
        with out.open("wb") as sink:
            started = subprocess.run(
                [DOVECOT, "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                timeout=30,
                check=False,
            )
        if started.returncode != 0:
            raise RuntimeError(f"dovecot did not start: {out.read_text(errors='replace')}")
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not _listening(port):
            if time.monotonic() > deadline:
                log = (directory / "dovecot.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"dovecot did not listen on {port}: {log}")
            time.sleep(0.1)
        yield OAuthImapServer(port=port, user=provider.username, directory=directory)
    finally:
        _stop(pid_file)
        shutil.rmtree(directory, ignore_errors=True)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _stop(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
