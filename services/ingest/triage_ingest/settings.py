"""Ingest service settings (env prefix ``TRIAGE_INGEST_``).

Nested settings come as JSON, e.g.
``TRIAGE_INGEST_IMAP_ACCOUNTS='[{"name": "support", "host": "imap.example.com", ...}]'``.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Self

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from triage_ingest.mailrules import MailRule, PostProcess
from triage_runtime.settings import CommonSettings

SOURCE_NAME = r"^[a-z0-9][a-z0-9_.-]{0,79}$"
# The most an upload request may carry besides its files' contents: part headers,
# boundaries and the metadata field (at most 64 KiB of JSON).
FORM_BYTES = 1024 * 1024
MAX_DOCUMENT_BYTES = 25 * 1024 * 1024
# Settings replaced by MAX_DOCUMENT_BYTES: refused by name, so an old limit is not silently lost.
RETIRED_LIMITS = ("max_upload_bytes", "smtp_max_message_bytes")


class ImapAuth(StrEnum):
    """How the IMAP connector logs in."""

    PASSWORD = "password"  # noqa: S105 - the name of a choice, not a secret
    OAUTH2 = "oauth2"


class OAuthGrant(StrEnum):
    """How access tokens are obtained from the token endpoint."""

    REFRESH_TOKEN = "refresh_token"  # noqa: S105 - the name of a grant, not a secret
    CLIENT_CREDENTIALS = "client_credentials"


class OAuthMechanism(StrEnum):
    """The SASL mechanism that carries the access token to the IMAP server."""

    XOAUTH2 = "xoauth2"
    OAUTHBEARER = "oauthbearer"


class ImapOAuth2(BaseModel):
    """Where and how the IMAP connector gets OAuth2 access tokens (``auth: "oauth2"``)."""

    token_url: str = Field(
        pattern=r"^https?://", description="The provider's OAuth2 token endpoint."
    )
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = Field(
        default=None, description="Needed for client_credentials; optional for public clients."
    )
    grant: OAuthGrant = OAuthGrant.REFRESH_TOKEN
    refresh_token: SecretStr | None = Field(default=None, description="For grant refresh_token.")
    scope: str = Field(default="", description="Space-separated scopes to ask for.")
    mechanism: OAuthMechanism = OAuthMechanism.XOAUTH2
    refresh_margin_seconds: float = Field(
        default=60.0, ge=0, description="Get a new token this long before the old one expires."
    )

    @model_validator(mode="after")
    def _grant_has_its_secret(self) -> Self:
        if self.grant is OAuthGrant.REFRESH_TOKEN and self.refresh_token is None:
            raise ValueError('oauth2 grant "refresh_token" needs "refresh_token"')
        if self.grant is OAuthGrant.CLIENT_CREDENTIALS and self.client_secret is None:
            raise ValueError('oauth2 grant "client_credentials" needs "client_secret"')
        return self


class ImapAccount(BaseModel):
    """One IMAP account and the mailboxes to read from it."""

    name: str = Field(pattern=SOURCE_NAME, description="Source name of the documents it makes.")
    host: str
    port: int = 993
    tls: bool = Field(default=True, description="Implicit TLS (IMAPS).")
    starttls: bool = Field(default=False, description="Upgrade a plain connection with STARTTLS.")
    ca_file: Path | None = Field(default=None, description="CA bundle to verify the server.")
    username: str
    auth: ImapAuth = ImapAuth.PASSWORD
    password: SecretStr | None = Field(default=None, description="For auth password.")
    oauth2: ImapOAuth2 | None = Field(default=None, description="For auth oauth2.")
    auth_retry_seconds: float = Field(
        default=30.0, gt=0, description="First wait after a refused login; doubles each time."
    )
    auth_retry_max_seconds: float = Field(
        default=900.0, gt=0, description="The longest wait between refused logins."
    )
    mailboxes: list[str] = Field(default_factory=lambda: ["INBOX"], min_length=1)
    post_process: PostProcess = PostProcess.FLAG
    move_to: str = "Processed"
    poll_seconds: float = Field(default=30.0, gt=0)
    idle: bool = Field(default=True, description="Use IDLE when the server offers it.")
    idle_seconds: float = Field(default=300.0, gt=0, description="Renew IDLE this often.")
    rules: list[MailRule] = Field(
        default_factory=list,
        description="Mail rules, tried in order; the first that matches applies (docs/ingest.md).",
    )
    max_attempts: int = Field(
        default=3,
        ge=1,
        description="A message whose intake fails (or stops the process) this many times is "
        "dead-lettered and left in the mailbox; the mailbox moves on.",
    )

    @model_validator(mode="after")
    def _auth_has_its_settings(self) -> Self:
        if self.auth is ImapAuth.PASSWORD and self.password is None:
            raise ValueError(f'IMAP account "{self.name}": auth "password" needs "password"')
        if self.auth is ImapAuth.OAUTH2 and self.oauth2 is None:
            raise ValueError(f'IMAP account "{self.name}": auth "oauth2" needs an "oauth2" object')
        return self


class Settings(CommonSettings):
    """Settings for the ingest service."""

    model_config = SettingsConfigDict(env_prefix="TRIAGE_INGEST_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8001
    max_document_bytes: int = Field(
        default=MAX_DOCUMENT_BYTES,
        gt=0,
        description="The most bytes one inbound file or whole mail may have, on every path: "
        "upload (413), SMTP (552), drop folder and IMAP (dead letter).",
    )
    max_upload_bytes: int | None = Field(
        default=None, description="Retired: setting it stops the service (use MAX_DOCUMENT_BYTES)."
    )
    smtp_max_message_bytes: int | None = Field(
        default=None, description="Retired: setting it stops the service (use MAX_DOCUMENT_BYTES)."
    )
    max_files_per_request: int = Field(default=20, gt=0)
    max_concurrent_uploads: int = Field(
        default=16,
        gt=0,
        description="Uploads handled at once; more get 503 + Retry-After before any body is read.",
    )
    max_concurrent_uploads_per_key: int = Field(
        default=4,
        gt=0,
        description="Uploads one API key may have in progress at once; more get 429 at once.",
    )
    body_idle_timeout_seconds: float = Field(
        default=15.0,
        gt=0,
        description="An upload whose body sends nothing for this long is cut off with 408.",
    )
    min_body_bytes_per_second: float = Field(
        default=1024.0,
        ge=0,
        description="An upload body is due BODY_IDLE_TIMEOUT_SECONDS after it starts plus 1 s "
        "for each this many bytes that came; later is 408, however short each gap (0: off).",
    )
    uploads_per_minute_per_key: float = Field(
        default=600.0,
        ge=0,
        description="Sustained upload requests a minute per API key (0: no limit); over it 429.",
    )
    upload_burst_per_key: int = Field(
        default=60, gt=0, description="Upload requests one API key may send at once in a burst."
    )
    idempotency_reservation_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A request's hold on its Idempotency-Key, renewed every third of it while "
        "the request runs; a key whose request died is free again at most this long after.",
    )
    idempotency_wait_seconds: float = Field(
        default=10.0,
        ge=0,
        description="How long a request waits for another one holding the same "
        "Idempotency-Key to answer before it gets 409.",
    )
    require_api_key: bool = Field(
        default=True, description="Refuse uploads without a valid API key (turn off only in tests)."
    )
    source_name: str = Field(
        default="http-upload",
        pattern=SOURCE_NAME,
        description="Source name for uploads when API keys are off; otherwise the key's name.",
    )

    smtp_enabled: bool = False
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_source_name: str = Field(default="smtp", pattern=SOURCE_NAME)
    smtp_allowed_recipients: list[str] = Field(
        default_factory=list,
        description="Addresses (or @domain suffixes) mail is accepted for; empty refuses all.",
    )
    smtp_tls_cert_file: Path | None = Field(
        default=None, description="Certificate chain (PEM) to offer STARTTLS with."
    )
    smtp_tls_key_file: Path | None = Field(default=None, description="Its private key (PEM).")
    smtp_require_starttls: bool = Field(
        default=False, description="Refuse every command but EHLO/STARTTLS/QUIT before TLS."
    )
    smtp_auth_username: str | None = Field(
        default=None, description="When set (with the password), mail needs SMTP AUTH."
    )
    smtp_auth_password: SecretStr | None = None
    smtp_authserv_id: str | None = Field(
        default=None,
        description="Keep the top-most Authentication-Results written by this server (RFC "
        "8601 authserv-id), e.g. your MTA's host name; unset: the top-most one.",
    )
    smtp_auth_allow_plaintext: bool = Field(
        default=False, description="Allow AUTH without STARTTLS (password in clear; tests only)."
    )

    imap_accounts: list[ImapAccount] = Field(default_factory=list)

    drop_dir: Path | None = Field(
        default=None,
        description="Watch DROP_DIR/inbox; files move to processing/, then done/ or failed/.",
    )
    drop_source_name: str = Field(default="drop-folder", pattern=SOURCE_NAME)
    drop_poll_seconds: float = Field(default=2.0, gt=0)
    drop_settle_seconds: float = Field(
        default=5.0,
        ge=0,
        description="A file written in place is taken once its size and mtime have not "
        "changed for this long; a file renamed into the inbox is taken at once.",
    )

    @model_validator(mode="after")
    # Not ``_consistent``: that name would replace KafkaConnection's check of the Kafka settings.
    def _ingest_consistent(self) -> Settings:
        for retired in RETIRED_LIMITS:
            if getattr(self, retired) is not None:
                raise ValueError(
                    f"TRIAGE_INGEST_{retired.upper()} is replaced by "
                    "TRIAGE_INGEST_MAX_DOCUMENT_BYTES, one limit for every path"
                )
        if (self.smtp_tls_cert_file is None) != (self.smtp_tls_key_file is None):
            raise ValueError("set both TRIAGE_INGEST_SMTP_TLS_CERT_FILE and _KEY_FILE, or neither")
        if self.smtp_require_starttls and self.smtp_tls_cert_file is None:
            raise ValueError("TRIAGE_INGEST_SMTP_REQUIRE_STARTTLS needs a certificate and key")
        if (self.smtp_auth_username is None) != (self.smtp_auth_password is None):
            raise ValueError("set both TRIAGE_INGEST_SMTP_AUTH_USERNAME and _PASSWORD, or neither")
        if (
            self.smtp_auth_username is not None
            and self.smtp_tls_cert_file is None
            and not self.smtp_auth_allow_plaintext
        ):
            raise ValueError(
                "SMTP AUTH without TLS sends the password in clear: set "
                "TRIAGE_INGEST_SMTP_TLS_CERT_FILE and _KEY_FILE (or SMTP_AUTH_ALLOW_PLAINTEXT)"
            )
        return self

    @property
    def max_request_bytes(self) -> int:
        """The most bytes one upload request may carry: as many files as a key may send, each
        at the per-file limit, and the form around them."""
        return self.max_document_bytes * self.max_files_per_request + FORM_BYTES
