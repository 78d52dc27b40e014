"""One Settings object, built at the entry point and passed down (nothing reads the env at import)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

OFFICIAL_TELEGRAM_API = "https://api.telegram.org"
OFFICIAL_GOOGLE_API = "https://www.googleapis.com/"


_PRINTABLE = re.compile(r"[!-~]+")  # ASCII without spaces: what survives a .env line and a header
_URL_SAFE = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class SecretRule:
    min_bytes: int = 1
    alphabet: re.Pattern[str] = _PRINTABLE
    described: str = "printable ASCII without spaces"
    max_bytes: int = 4096
    hint: str = ""


_GENERATE = " (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
_POSTGRES_URL = SecretRule(
    alphabet=re.compile(r"postgres(ql)?://\S+"), described="a postgresql:// URL", hint=""
)
# Every SecretStr setting but the key lists (Fernet keys, payload keys), which have their own parsers.
SECRET_RULES: dict[str, SecretRule] = {
    "telegram_bot_token": SecretRule(
        alphabet=re.compile(r"\d{1,20}:[A-Za-z0-9_-]+"),
        described="a bot token as @BotFather gives it (<digits>:<letters>)",
    ),
    # Telegram's own limits for secret_token: 1-256 of A-Z a-z 0-9 _ -.
    "telegram_webhook_secret": SecretRule(
        32, _URL_SAFE, "letters, digits, _ and - (Telegram's alphabet), at most 256", 256, _GENERATE
    ),
    "database_url": _POSTGRES_URL,
    "app_database_url": _POSTGRES_URL,
    "system_database_url": _POSTGRES_URL,
    "temporal_api_key": SecretRule(),
    "llm_api_key": SecretRule(),
    "billing_webhook_secret": SecretRule(32, hint=" (the provider's signing secret, e.g. Stripe's whsec_…)"),
    "telegram_payments_provider_token": SecretRule(
        alphabet=re.compile(r"\d{1,20}:[A-Za-z0-9_:-]+"), described="a provider token as @BotFather gives it"
    ),
    "jwt_secret": SecretRule(32, hint=_GENERATE),
    "google_oauth_client_secret": SecretRule(),
    "oauth_state_secret": SecretRule(32, hint=_GENERATE),
}


def _not_empty(v: object) -> str:
    """The raw text of a secret; an empty one (`KEY=` from a template .env) is an error, never a key."""
    raw = v.get_secret_value() if isinstance(v, SecretStr) else str(v)
    if not raw.strip():
        raise ValueError("is empty; set a value, or remove the line to leave it unset")
    return raw


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AUTODISPATCH_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # Telegram
    telegram_bot_token: SecretStr | None = None
    telegram_api_base: str = OFFICIAL_TELEGRAM_API
    telegram_mode: Literal["polling", "webhook"] = "polling"
    telegram_webhook_secret: SecretStr | None = None
    telegram_webhook_url: str | None = None  # public URL Telegram should call (webhook mode)
    # An update failing this many times for reasons of its own (not a service away) is set aside as a
    # dead letter (`autodispatch deadletter`), so the polling offset, the webhook and the inbox move on.
    telegram_update_max_attempts: int = Field(default=10, ge=1, le=1000)

    # Google Calendar
    google_api_endpoint: str = OFFICIAL_GOOGLE_API
    google_service_account_file: Path | None = None
    event_duration_minutes: int = Field(default=60, ge=5, le=24 * 60)

    # Data
    database_url: SecretStr | None = None  # None: embedded PostgreSQL under data_dir
    # The role the app connects as (not owner, superuser nor BYPASSRLS; checked at start-up); created by
    # the migrations. Required with an external DATABASE_URL.
    app_database_url: SecretStr | None = None
    # A login for the cross-tenant context (the autodispatch_system role); unset: the owner's
    # DATABASE_URL with SET LOCAL ROLE autodispatch_system per transaction.
    system_database_url: SecretStr | None = None

    # Temporal
    temporal_address: str | None = None  # None: embedded dev server
    temporal_namespace: str = "default"
    temporal_api_key: SecretStr | None = None
    temporal_tls: bool = False
    temporal_tls_cert_file: Path | None = None
    temporal_tls_key_file: Path | None = None
    temporal_task_queue: str = "autodispatch"
    # All messages to Telegram go through one queue per bot (telegram-outbound-<bot id>), rate-limited
    # by the Temporal server so the budget holds across workers.
    telegram_messages_per_second: float = Field(default=30.0, gt=0)  # Bot API: 30 msg/s per bot
    telegram_per_chat_interval: float = Field(default=1.0, ge=0)  # and about one per second per chat
    # Tenants' own bots (docs/bots.md): changes arrive by LISTEN/NOTIFY; this reload catches a lost one.
    bot_reload_seconds: float = Field(default=30.0, gt=0)
    temporal_grpc_port: int = 7233
    temporal_ui_port: int = 8233
    postgres_port: int = 55432  # embedded PostgreSQL (loopback only)

    # Process
    data_dir: Path = Path(".data")
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    log_level: str = "INFO"
    # "passthrough": the workflow modules are imported once, not afresh for every workflow run (about a
    # quarter of the worker's CPU); the strict sandbox's checks still run in CI, whose workflow tests and
    # replays use it. "strict": the SDK's default everywhere.
    workflow_sandbox: Literal["strict", "passthrough"] = "passthrough"
    default_time_zone: str = "Europe/Moscow"

    # Sandbox mode (no Telegram token / no Google credentials): the project's emulators on these ports.
    sandbox_telegram_port: int = 8081
    sandbox_google_port: int = 8082

    # Optional LLM fallback for orders the rules cannot resolve (off unless set)
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_model: str = "gpt-4o-mini"

    # Billing: Stripe-signed payment webhooks (POST /billing/webhook) and Telegram Payments (/subscribe).
    billing_webhook_secret: SecretStr | None = None
    billing_period_days: int = Field(default=30, ge=1, le=3660)
    telegram_payments_provider_token: SecretStr | None = None
    billing_price_minor: int | None = Field(default=None, gt=0)  # smallest unit; whole stars for XTR
    billing_currency: str = "RUB"
    # The provider's product a webhook payment must be for (Stripe `prod_…`): required with the webhook.
    billing_product_id: str | None = None

    # Onboarding (#6 phase 2, docs/onboarding.md): a bare /start (no invite code) joins this tenant (id or
    # name); unset, a new driver needs a tenant's invite link https://t.me/<bot>?start=<invite code>. The
    # bot's username only completes the link the admin API shows.
    onboarding_default_tenant: str | None = None
    telegram_bot_username: str | None = None

    # Strangers (chats not on the whitelist) at the edge, before anything is stored or started: private
    # chats only (a tenant may enable groups for its whitelisted chats), a token bucket per chat and one
    # for all strangers together, one answer per chat per STRANGER_ANSWER_EVERY_HOURS (a /start and the
    # onboarding dialogue it opens always pass), and one aggregated audit row per denied chat per window.
    stranger_chat_burst: int = Field(default=10, ge=1)
    stranger_chat_refill_seconds: float = Field(default=6.0, gt=0)  # one more message per chat every …
    stranger_global_burst: int = Field(default=50, ge=1)
    stranger_global_per_second: float = Field(default=10.0, gt=0)
    stranger_answer_every_hours: float = Field(default=3.0, ge=0)
    denial_window_seconds: float = Field(default=600.0, gt=0)
    # Retention, applied daily by the RetentionWorkflow's Schedule: audit rows and sent replies (outbox)
    # older than this many days are deleted; 0 keeps them forever.
    audit_retention_days: int = Field(default=400, ge=0)
    outbox_retention_days: int = Field(default=30, ge=0)

    # Admin API (/api/v1): JWTs signed HS256 with jwt_secret, or RS256 (verified with the public key, or
    # the private key's public half; `token issue` signs with the private key). Unset: JWTs are refused,
    # API keys still work.
    jwt_secret: SecretStr | None = None
    jwt_public_key_file: Path | None = None
    jwt_private_key_file: Path | None = None
    # Every token names this issuer and audience (both checked), carries iat, and lives at most
    # jwt_max_ttl_days; `autodispatch token revoke` ends one (its jti) or all of a tenant's before that.
    jwt_issuer: str = Field(default="autodispatch", min_length=1)
    jwt_audience: str = Field(default="autodispatch-api", min_length=1)
    jwt_max_ttl_days: int = Field(default=30, ge=1, le=366)

    # Google OAuth2 (#6 phase 4): drivers connect their own calendar with /connect (docs/oauth.md).
    # Off unless GOOGLE_OAUTH_CLIENT_ID is set; then the secret, the state key and the token keys are
    # required. The endpoints are settings so tests and the sandbox use the local emulator.
    google_oauth_client_id: str | None = None
    google_oauth_client_secret: SecretStr | None = None
    google_oauth_auth_uri: str = "https://accounts.google.com/o/oauth2/v2/auth"
    google_oauth_token_uri: str = "https://oauth2.googleapis.com/token"
    google_oauth_revoke_uri: str = "https://oauth2.googleapis.com/revoke"
    # The public URL Google redirects to (proxy it to HTTP_PORT /oauth/google/callback); unset: derived
    # from HTTP_HOST/HTTP_PORT, which only a browser on this machine reaches.
    google_oauth_redirect_url: str | None = None
    google_oauth_scopes: str = "openid email https://www.googleapis.com/auth/calendar.events"
    oauth_state_secret: SecretStr | None = None  # HMAC key of the signed `state` (>= 32 bytes)
    # Fernet keys encrypting refresh tokens at rest, comma-separated, newest first (rotation: docs/oauth.md).
    oauth_token_keys: SecretStr | None = None

    # Operations (docs/operations.md). Temporal payloads are sealed with AES-256-GCM: comma-separated
    # `<key id>:<32 bytes base64url>`, newest first (it encrypts; the others still decrypt). Sandbox mode
    # keeps a generated key under DATA_DIR; elsewhere a missing key stops start-up unless
    # PAYLOAD_ENCRYPTION=false says histories may be plain.
    payload_keys: SecretStr | None = None
    payload_encryption: bool = True
    # Origins allowed to call the codec server (the Temporal UI's); unset: the embedded UI's.
    codec_cors_origins: str | None = None
    log_format: Literal["json", "text"] | None = None  # unset: json, text in sandbox mode
    otlp_endpoint: str | None = None  # OTLP/HTTP traces (e.g. http://jaeger:4318); unset: no traces
    # The Temporal SDK's own metrics (loopback; GET /metrics includes them); 0: any free port.
    sdk_metrics_port: int = Field(default=0, ge=0, le=65535)
    # `autodispatch worker` serves GET /metrics on HTTP_HOST at this port; unset: no endpoint (`up` and
    # `bot` serve /metrics on HTTP_PORT).
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)

    @field_validator("telegram_api_base", "google_api_endpoint")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v

    @field_validator("default_time_zone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v

    @field_validator("google_service_account_file")
    @classmethod
    def _sa_file(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"file {v} does not exist")
        return v

    @field_validator(*SECRET_RULES, mode="before")
    @classmethod
    def _secret(cls, v: object, info: ValidationInfo) -> object:
        if v is None:
            return None
        raw = _not_empty(v)
        rule = SECRET_RULES[str(info.field_name)]
        if len(raw.encode()) < rule.min_bytes:
            raise ValueError(f"must be at least {rule.min_bytes} bytes{rule.hint}")
        if len(raw.encode()) > rule.max_bytes or not rule.alphabet.fullmatch(raw):
            raise ValueError(f"must be {rule.described}{rule.hint}")
        return v

    @field_validator("billing_currency")
    @classmethod
    def _currency(cls, v: str) -> str:
        code = v.strip().upper()
        if not re.fullmatch(r"[A-Z]{3}", code):
            raise ValueError(
                f"{v!r} is not a currency code (three letters: RUB, EUR, USD; XTR for Telegram Stars)"
            )
        return code

    @field_validator("billing_product_id")
    @classmethod
    def _product(cls, v: str | None) -> str | None:
        if v is None:
            return None
        if not _PRINTABLE.fullmatch(v.strip()):
            raise ValueError("must be the provider's product id (Stripe: prod_…), without spaces")
        return v.strip()

    @field_validator("google_oauth_auth_uri", "google_oauth_token_uri", "google_oauth_revoke_uri")
    @classmethod
    def _oauth_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v

    @field_validator("oauth_token_keys", mode="before")
    @classmethod
    def _token_keys(cls, v: object) -> object:
        if v is None:
            return None
        _not_empty(v)
        from cryptography.fernet import Fernet  # only when set: `parse` stays light

        raw = v.get_secret_value() if isinstance(v, SecretStr) else str(v)
        keys = [k.strip() for k in raw.split(",") if k.strip()]
        try:
            for key in keys:
                Fernet(key.encode())
        except ValueError:
            raise ValueError(
                "each key must be a Fernet key (`python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`), comma-separated, newest first"
            ) from None
        return v

    @field_validator("payload_keys", mode="before")
    @classmethod
    def _payload_keys(cls, v: object) -> object:
        if v is None:
            return None
        _not_empty(v)
        from autodispatch.codec import parse_keys

        parse_keys(v.get_secret_value() if isinstance(v, SecretStr) else str(v))
        return v

    @field_validator("otlp_endpoint")
    @classmethod
    def _otlp(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL (OTLP over HTTP, e.g. http://jaeger:4318)")
        return v

    @field_validator("jwt_public_key_file", "jwt_private_key_file")
    @classmethod
    def _jwt_key_file(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"file {v} does not exist")
        return v

    @model_validator(mode="after")
    def _features_have_their_keys(self) -> Settings:
        """A feature that is on has every key it signs or checks with (one line naming the missing one)."""
        problem = None
        if self.telegram_mode == "webhook" and self.telegram_bot_token and not self.telegram_webhook_secret:
            problem = "AUTODISPATCH_TELEGRAM_WEBHOOK_SECRET: required in webhook mode"
        elif self.billing_webhook_secret is not None and self.billing_price_minor is None:
            problem = "AUTODISPATCH_BILLING_PRICE_MINOR: required with AUTODISPATCH_BILLING_WEBHOOK_SECRET (a payment activates only at this price)"
        elif self.billing_webhook_secret is not None and self.billing_product_id is None:
            problem = "AUTODISPATCH_BILLING_PRODUCT_ID: required with AUTODISPATCH_BILLING_WEBHOOK_SECRET (the provider's product a payment must be for)"
        elif self.telegram_payments_provider_token is not None and self.billing_price_minor is None:
            problem = "AUTODISPATCH_BILLING_PRICE_MINOR: required with AUTODISPATCH_TELEGRAM_PAYMENTS_PROVIDER_TOKEN"
        if problem:
            raise ValueError(problem)
        return self

    # Derived views -----------------------------------------------------------------
    @property
    def sandbox(self) -> bool:
        """Something is emulated (no Telegram token or no Google credentials): a machine to try on."""
        return not (self.telegram_configured and self.google_configured)

    @property
    def json_logs(self) -> bool:
        return self.log_format == "json" if self.log_format else not self.sandbox

    @property
    def codec_origins(self) -> list[str]:
        if self.codec_cors_origins:
            return [o.strip().rstrip("/") for o in self.codec_cors_origins.split(",") if o.strip()]
        return [f"http://{host}:{self.temporal_ui_port}" for host in ("127.0.0.1", "localhost")]

    @property
    def telegram_configured(self) -> bool:
        return self.telegram_bot_token is not None

    @property
    def google_is_official(self) -> bool:
        return "googleapis.com" in self.google_api_endpoint

    @property
    def google_configured(self) -> bool:
        """Real Google needs credentials; any other host (an emulator) may go without."""
        return self.google_service_account_file is not None or not self.google_is_official

    @property
    def oauth_redirect_url(self) -> str:
        """Where Google sends the driver back (GET /oauth/google/callback on our server)."""
        if self.google_oauth_redirect_url:
            return self.google_oauth_redirect_url
        return f"http://{self.http_host}:{self.http_port}/oauth/google/callback"

    @property
    def oauth_configured(self) -> bool:
        return bool(
            self.google_oauth_client_id
            and self.google_oauth_client_secret
            and self.oauth_state_secret
            and self.oauth_token_keys
        )

    @property
    def calendar_api_root(self) -> str:
        """The root URL google-api-python-client wants as api_endpoint (…/calendar/v3/)."""
        root = self.google_api_endpoint.rstrip("/") + "/"
        return root if root.endswith("calendar/v3/") else root + "calendar/v3/"


class SettingsError(SystemExit):
    """A broken config: one clear line naming the setting, then exit code 2."""


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = str(err["msg"]).removeprefix("Value error, ")
        if not err["loc"]:  # a check across settings names its setting itself
            raise SettingsError(f"configuration error: {msg}") from None
        raise SettingsError(
            f"configuration error: AUTODISPATCH_{str(err['loc'][0]).upper()}: {msg}"
        ) from None
