"""Every secret setting is checked at start-up: an empty one is an error (never an empty key), a short
or malformed one is an error, and a feature that is on has its keys."""

from __future__ import annotations

import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import SecretStr

from autodispatch.settings import SECRET_RULES, Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[1]
# Key lists with their own parsers (Fernet keys; `<key id>:<key>` payload keys).
KEY_LISTS = {"oauth_token_keys", "payload_keys"}


def secret_fields() -> list[str]:
    hints = typing.get_type_hints(Settings)
    return [name for name in Settings.model_fields if SecretStr in typing.get_args(hints[name])]


def test_every_secret_setting_has_a_rule() -> None:
    names = secret_fields()
    assert {"billing_webhook_secret", "telegram_webhook_secret", "jwt_secret", "oauth_state_secret"} <= set(
        names
    )
    assert set(names) == set(SECRET_RULES) | KEY_LISTS


@pytest.mark.parametrize("name", secret_fields())
def test_an_empty_secret_is_an_error_naming_it(name: str) -> None:
    for empty in ("", "   "):
        with pytest.raises(SettingsError) as caught:
            load_settings(_env_file=None, **{name: empty})
        message = str(caught.value)
        assert (
            message
            == f"configuration error: AUTODISPATCH_{name.upper()}: is empty; set a value, or remove the line to leave it unset"
        )


def test_an_empty_line_in_dot_env_does_not_enable_the_billing_webhook(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("AUTODISPATCH_BILLING_WEBHOOK_SECRET=\n")
    code = "from autodispatch.settings import load_settings; load_settings()"
    run = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert run.returncode != 0
    assert run.stderr.strip().splitlines()[-1] == (
        "configuration error: AUTODISPATCH_BILLING_WEBHOOK_SECRET: is empty; set a value, or remove the line "
        "to leave it unset"
    )


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"billing_webhook_secret": "whsec_short"}, "AUTODISPATCH_BILLING_WEBHOOK_SECRET: must be at least 32 bytes"),
        ({"billing_webhook_secret": "whsec_ " + "x" * 40}, "AUTODISPATCH_BILLING_WEBHOOK_SECRET: must be printable ASCII"),
        ({"jwt_secret": "x" * 31}, "AUTODISPATCH_JWT_SECRET: must be at least 32 bytes"),
        ({"oauth_state_secret": "x" * 10}, "AUTODISPATCH_OAUTH_STATE_SECRET: must be at least 32 bytes"),
        ({"telegram_webhook_secret": "a" * 31}, "AUTODISPATCH_TELEGRAM_WEBHOOK_SECRET: must be at least 32 bytes"),
        ({"telegram_webhook_secret": "ä" * 40}, "AUTODISPATCH_TELEGRAM_WEBHOOK_SECRET: must be letters, digits"),
        ({"telegram_webhook_secret": "a" * 257}, "AUTODISPATCH_TELEGRAM_WEBHOOK_SECRET: must be letters, digits"),
        ({"telegram_bot_token": "not a token"}, "AUTODISPATCH_TELEGRAM_BOT_TOKEN: must be a bot token"),
        ({"telegram_payments_provider_token": "x y"}, "AUTODISPATCH_TELEGRAM_PAYMENTS_PROVIDER_TOKEN: must be"),
        ({"database_url": "mysql://x"}, "AUTODISPATCH_DATABASE_URL: must be a postgresql:// URL"),
        ({"app_database_url": "owner"}, "AUTODISPATCH_APP_DATABASE_URL: must be a postgresql:// URL"),
        ({"oauth_token_keys": "not-a-fernet-key"}, "AUTODISPATCH_OAUTH_TOKEN_KEYS: each key must be a Fernet key"),
        ({"billing_currency": "rubles"}, "AUTODISPATCH_BILLING_CURRENCY: 'rubles' is not a currency code"),
        # A feature that is on has its keys.
        ({"telegram_bot_token": "1:x", "telegram_mode": "webhook"}, "AUTODISPATCH_TELEGRAM_WEBHOOK_SECRET: required in webhook mode"),
        ({"billing_webhook_secret": "whsec_" + "x" * 32}, "AUTODISPATCH_BILLING_PRICE_MINOR: required with AUTODISPATCH_BILLING_WEBHOOK_SECRET"),
        ({"billing_webhook_secret": "whsec_" + "x" * 32, "billing_price_minor": 100}, "AUTODISPATCH_BILLING_PRODUCT_ID: required"),
        ({"telegram_payments_provider_token": "1:TEST:x"}, "AUTODISPATCH_BILLING_PRICE_MINOR: required with AUTODISPATCH_TELEGRAM_PAYMENTS"),
    ],
)  # fmt: skip
def test_a_weak_or_missing_key_stops_start_up_with_one_line(values: dict[str, object], expected: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None, **values)
    message = str(caught.value)
    assert message.startswith(f"configuration error: {expected}"), message
    assert "\n" not in message


def test_good_keys_pass() -> None:
    s = load_settings(
        _env_file=None, telegram_bot_token="123:AAbb-_", telegram_mode="webhook",
        telegram_webhook_secret="A" * 32, billing_webhook_secret="whsec_" + "x" * 32, billing_price_minor=99000,
        billing_product_id="prod_1", billing_currency="eur", jwt_secret="j" * 32,
        telegram_payments_provider_token="284685063:TEST:sandbox",
        database_url="postgresql://o@h/db", app_database_url="postgres://a@h/db",
    )  # fmt: skip
    assert s.billing_currency == "EUR" and s.billing_product_id == "prod_1"
