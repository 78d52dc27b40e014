"""Each fleet its own bot (docs/bots.md), end to end on the real stack: the default bot and tenants' own
bots in the Telegram emulator, registered while the stack runs, each with its own webhook, token and
send budget; a revoked token pauses its bot only."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import ActivityEnvironment

from activities.calendar import CalendarService
from activities.onboarding import OnboardingActivities
from activities.telegram import TelegramActivities
from autodispatch import admin, bots
from autodispatch.admin import AdminError
from autodispatch.cli import build_parser, cmd_bot
from autodispatch.db import system_tx
from autodispatch.embedded import EmbeddedTemporal
from autodispatch.oauth import generate_key
from autodispatch.onboarding_admin import get_onboarding
from autodispatch.settings import Settings
from autodispatch.stack import Stack
from bot.dispatcher import make_bot
from bot.server import SECRET_HEADER, WEBHOOK_PATH
from schemas.onboarding import ResolveTenantInput
from schemas.telegram import SendReplyInput, main_workflow_id
from tests.api_fixtures import add_tenant_driver, api_settings, audit_rows, bearer, new_tenant, start_api
from tests.conftest import Outside, Postgres, add_driver, new_bot_token, stack_settings, until
from tests.test_e2e import audit_actions, new_driver, running, send
from workflows.main import MainWorkflow

pytestmark = pytest.mark.e2e

ORDER = "завтра 9:30 Внуково → Тверская 7, 2500₽"


def user_writes(outside: Outside, token: str, chat_id: int, text: str) -> dict:
    return outside.telegram.user_sends(
        token, chat_id, text, from_user={"id": chat_id, "first_name": "Ivan", "language_code": "ru"}
    )


async def outcome(stack: Stack, bot_id: int, update_id: int, timeout: float = 90.0) -> str:
    assert stack.client is not None
    handle = stack.client.get_workflow_handle_for(MainWorkflow.run, main_workflow_id(bot_id, update_id))
    async with asyncio.timeout(timeout):
        while True:
            try:
                return (await handle.result()).outcome
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                await asyncio.sleep(0.1)


def texts_to(outside: Outside, token: str, chat_id: int) -> list[str]:
    return [m["text"] for m in outside.telegram.sent(token, chat_id) if m["method"] == "sendMessage"]


async def register(stack: Stack, tenant: str, token: str) -> dict:
    """`bot add` while the stack runs; returns once the stack serves the bot (no restart)."""
    assert stack.pool is not None and stack.fleet is not None
    row = await bots.add_bot(
        stack.pool, stack.settings, tenant, token, api_base=stack.settings.telegram_api_base, source="cli",
        actor="test",
    )  # fmt: skip
    await until(lambda: stack.fleet.lookup(row["bot_id"]), what="the new bot served")  # type: ignore[union-attr]
    return row


async def test_a_fleets_own_bot_serves_its_drivers_and_no_one_elses(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    settings = stack_settings(tmp_path, postgres, temporal_dev, outside, oauth_token_keys=generate_key())
    default_token = settings.telegram_bot_token.get_secret_value()  # type: ignore[union-attr]
    async with running(settings) as stack:
        chat_a, _, tenant_a = await new_driver(stack, outside)  # on the default bot only
        chat_b, _, tenant_b = await new_driver(stack, outside)
        token_b = new_bot_token()
        row = await register(stack, tenant_b, token_b)
        bot_b = row["bot_id"]
        assert row["username"] == f"bot{bot_b}_bot" and row["status"] == "active"

        # Its own webhook path and secret, set by the stack; its own command menu.
        hook = outside.telegram.webhook_info(token_b)
        assert hook["url"] == f"http://{settings.http_host}:{settings.http_port}{WEBHOOK_PATH}/{bot_b}"
        assert outside.telegram.webhook_info(default_token)["url"].endswith(WEBHOOK_PATH)
        async with httpx.AsyncClient() as http:
            menu = (await http.get(f"{outside.telegram.base_url}/_emulator/bots/{token_b}/commands")).json()
            forged = await http.post(
                f"{stack.sandbox.http}{WEBHOOK_PATH}/{bot_b}",
                json={"update_id": 1, "message": {}},
                headers={SECRET_HEADER: settings.telegram_webhook_secret.get_secret_value()},  # type: ignore[union-attr]
            )
        assert {c["command"] for c in menu[0]["commands"]} >= {"today", "help"}
        assert forged.status_code == 401  # the default bot's secret does not open another bot's webhook

        # B's driver on B's bot: B's order, the reply sent with B's token.
        sent = user_writes(outside, token_b, chat_b, ORDER)
        assert await outcome(stack, bot_b, sent["update_id"]) == "event_created"
        (card,) = texts_to(outside, token_b, chat_b)
        assert "✅" in card
        assert texts_to(outside, default_token, chat_b) == []
        # A picture is fetched with the bot it was sent to (a file id is valid with that bot only).
        picture = outside.telegram.user_sends(token_b, chat_b, None, photo=True, from_user={"id": chat_b})
        assert await outcome(stack, bot_b, picture["update_id"]) == "not_an_order"  # read, nothing in it
        assert await audit_actions(stack, tenant_b, "event_created")

        # A's driver writing to B's bot is a stranger there, answered by B's bot; on the default bot, A's.
        stray = user_writes(outside, token_b, chat_a, ORDER)
        assert await outcome(stack, bot_b, stray["update_id"]) == "unknown_chat"
        (refusal,) = texts_to(outside, token_b, chat_a)
        assert str(chat_a) in refusal
        assert await audit_actions(stack, tenant_a, "event_created") == []
        # ... and B's stranger: the refusal is in B's audit log, nothing of it in A's.
        refused = [r for r in await audit_actions(stack, tenant_b, "unknown_chat") if r["chat_id"] == chat_a]
        assert refused and await audit_actions(stack, tenant_a, "unknown_chat") == []
        home = send(outside, stack, chat_a, ORDER)
        assert await outcome(stack, stack.bot.id, home["update_id"]) == "event_created"  # type: ignore[union-attr]

        # B's invite link names B's bot.
        assert stack.pool is not None
        link = (await get_onboarding(stack.pool, settings, tenant_b))["deep_link"]
        assert link is None or link.startswith(f"https://t.me/bot{bot_b}_bot?start=")

        # One bot, one tenant; and a token Telegram refuses is not stored.
        other, _, _ = await new_driver(stack, outside)
        with pytest.raises(admin.AdminError, match="another tenant"):
            await bots.add_bot(
                stack.pool, settings, (await _tenant_of(stack, other)), token_b,
                api_base=settings.telegram_api_base, source="cli", actor="test",
            )  # fmt: skip
        revoked = new_bot_token()
        outside.telegram.revoke_token(revoked)
        with pytest.raises(AdminError, match="401"):
            await bots.add_bot(
                stack.pool, settings, tenant_b, revoked, api_base=settings.telegram_api_base, source="cli",
                actor="test",
            )  # fmt: skip

        # Removed: no longer served, Telegram's deliveries to its path are refused.
        await bots.remove_bot(stack.pool, settings, tenant_b, str(bot_b), source="cli", actor="test")
        await until(lambda: stack.fleet.lookup(bot_b) is None, what="the bot no longer served")  # type: ignore[union-attr]
        async with httpx.AsyncClient() as http:
            gone = await http.post(f"{stack.sandbox.http}{WEBHOOK_PATH}/{bot_b}", json={"update_id": 2})
        assert gone.status_code == 404
        # Telegram is told to stop delivering to it.
        await until(lambda: outside.telegram.webhook_info(token_b)["url"] == "", what="the webhook deleted")


async def _tenant_of(stack: Stack, chat_id: int) -> str:
    assert stack.pool is not None
    rows = await admin.list_drivers(stack.pool)
    return next(r["tenant_id"] for r in rows if r["chat_id"] == chat_id)


async def test_a_revoked_token_pauses_that_bot_only_and_the_new_token_resumes_it(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    settings = stack_settings(
        tmp_path, postgres, temporal_dev, outside, oauth_token_keys=generate_key(), telegram_mode="polling"
    )
    async with running(settings) as stack:
        chat_b, _, tenant_b = await new_driver(stack, outside)
        chat_c, _, tenant_c = await new_driver(stack, outside)
        token_b, token_c = new_bot_token(), new_bot_token()
        bot_b = (await register(stack, tenant_b, token_b))["bot_id"]
        bot_c = (await register(stack, tenant_c, token_c))["bot_id"]

        outside.telegram.revoke_token(token_b)  # /revoke in @BotFather: the polling sees 401
        assert stack.pool is not None
        paused = await until(lambda: _status(stack, tenant_b), what="the bot paused", timeout=60)
        assert paused["status"] == "paused" and "Unauthorized" in paused["paused_reason"]
        (audited,) = await audit_actions(stack, tenant_b, "bot_paused")
        assert audited["details"]["bot_id"] == bot_b
        await until(lambda: stack.fleet.lookup(bot_b) is None, what="the bot no longer served")  # type: ignore[union-attr]

        # The others keep running: tenant C's bot and the default bot.
        sent = user_writes(outside, token_c, chat_c, ORDER)
        assert await outcome(stack, bot_c, sent["update_id"]) == "event_created"
        assert (await bots.list_bots(stack.pool, settings, tenant_c))[0]["status"] == "active"

        # The new token from @BotFather keeps the bot id: registering it resumes the bot, and what its
        # driver wrote meanwhile is handled.
        new_token = f"{bot_b}:{uuid.uuid4().hex}"
        waiting = user_writes(outside, new_token, chat_b, ORDER)
        resumed = await register(stack, tenant_b, new_token)
        assert resumed["bot_id"] == bot_b and resumed["status"] == "active"
        assert await outcome(stack, bot_b, waiting["update_id"]) == "event_created"
        assert len(texts_to(outside, new_token, chat_b)) == 1
        (replaced,) = await audit_actions(stack, tenant_b, "bot_token_replaced")
        assert replaced["details"]["resumed"] is True


async def _status(stack: Stack, tenant: str) -> dict | None:
    assert stack.pool is not None
    (row,) = await bots.list_bots(stack.pool, stack.settings, tenant)
    return row if row["status"] == "paused" else None


# -- without the stack: the API, the CLI, the send activity, onboarding on a fleet's bot -------------
async def test_the_admin_api_registers_lists_and_removes_a_tenants_bot(
    postgres: Postgres, outside: Outside
) -> None:
    api = await start_api(
        postgres.pool, oauth_token_keys=generate_key(), telegram_api_base=outside.telegram.base_url
    )
    try:
        own = await new_tenant(postgres.pool, api.settings)
        other = await new_tenant(postgres.pool, api.settings)
        token = new_bot_token()
        path = f"/api/v1/tenants/{own.tenant_id}/bots"
        created = await api.client.post(path, json={"token": token}, headers=bearer(own.admin_key))
        assert created.status == 201, await created.text()
        body = await created.json()
        assert body["status"] == "active" and body["webhook_path"] == f"{WEBHOOK_PATH}/{body['bot_id']}"
        assert token not in json.dumps(body)
        listed = await (await api.client.get(path, headers=bearer(own.admin_key))).json()
        assert [b["bot_id"] for b in listed["items"]] == [body["bot_id"]]
        # Another tenant's admin neither sees it nor can take it.
        theirs = f"/api/v1/tenants/{other.tenant_id}/bots"
        assert (await api.client.get(path, headers=bearer(other.admin_key))).status == 403
        taken = await api.client.post(theirs, json={"token": token}, headers=bearer(other.admin_key))
        assert taken.status == 409
        # The token is stored encrypted, never in plain text.
        async with system_tx(postgres.pool) as conn:
            stored = await conn.fetchval("SELECT token FROM tenant_bots WHERE bot_id = $1", body["bot_id"])
        assert token not in stored and bots.bot_cipher(api.settings).decrypt(stored)[0] == token
        outside.telegram.revoke_token(refused := new_bot_token())
        bad = await api.client.post(path, json={"token": refused}, headers=bearer(own.admin_key))
        assert bad.status == 400 and "401" in (await bad.json())["error"]["message"]
        gone = await api.client.delete(f"{path}/{body['bot_id']}", headers=bearer(own.admin_key))
        assert gone.status == 204
        assert (await (await api.client.get(path, headers=bearer(own.admin_key))).json())["items"] == []
        assert [
            r["action"] for r in await audit_rows(postgres.pool, own.tenant_id) if "bot" in r["action"]
        ] == [
            "bot_added",
            "bot_removed",
        ]
    finally:
        await api.client.close()


async def test_a_send_refused_with_401_pauses_the_bot_and_waits_instead_of_failing(
    postgres: Postgres, outside: Outside
) -> None:
    settings = api_settings(oauth_token_keys=generate_key())
    tenant = await new_tenant(postgres.pool, settings)
    chat_id = await add_tenant_driver(postgres.pool, tenant.tenant_id)
    token = new_bot_token()
    row = await bots.add_bot(
        postgres.pool, settings, tenant.tenant_id, token, api_base=outside.telegram.base_url, source="cli",
        actor="test",
    )  # fmt: skip
    outside.telegram.add_chat(token, chat_id)
    outside.telegram.revoke_token(token)
    bot = make_bot(token, outside.telegram.base_url)

    async def revoked(reason: str) -> None:
        await bots.pause_bot(postgres.pool, row["bot_id"], reason)

    acts = TelegramActivities(bot, postgres.pool, revoked=revoked)
    req = SendReplyInput(
        tenant_id=tenant.tenant_id, workflow_id=f"wf-{uuid.uuid4()}", step="reply", chat_id=chat_id, text="hi"
    )
    try:
        with pytest.raises(ApplicationError) as paused:
            await ActivityEnvironment().run(acts.send_reply, req)
    finally:
        await bot.session.close()
    # Retried later (the reply waits in the bot's queue), not given up.
    assert paused.value.type == "TelegramBotPaused" and not paused.value.non_retryable
    assert paused.value.next_retry_delay is not None
    (listed,) = await bots.list_bots(postgres.pool, settings, tenant.tenant_id)
    assert listed["status"] == "paused" and "Unauthorized" in listed["paused_reason"]
    assert await bots.pause_bot(postgres.pool, row["bot_id"], "again") is False  # audited once
    assert len(await audit_rows(postgres.pool, tenant.tenant_id, "bot_paused")) == 1


async def test_a_fleets_bot_onboards_into_its_fleet_only(postgres: Postgres, outside: Outside) -> None:
    settings = api_settings(oauth_token_keys=generate_key())
    own, other = await new_tenant(postgres.pool, settings), await new_tenant(postgres.pool, settings)
    row = await bots.add_bot(
        postgres.pool, settings, own.tenant_id, new_bot_token(), api_base=outside.telegram.base_url,
        source="cli", actor="test",
    )  # fmt: skip
    async with system_tx(postgres.pool) as conn:
        codes = dict(await conn.fetch("SELECT tenant_id, invite_code FROM tenants WHERE tenant_id = ANY($1)",
                                      [own.tenant_id, other.tenant_id]))  # fmt: skip
    acts = OnboardingActivities(postgres.pool, CalendarService(outside.google.calendar_api_root))
    bare = await acts.resolve_tenant(ResolveTenantInput(bot_id=row["bot_id"]))
    assert bare.tenant is not None and bare.tenant.tenant_id == own.tenant_id
    with_code = await acts.resolve_tenant(ResolveTenantInput(code=codes[own.tenant_id], bot_id=row["bot_id"]))
    assert with_code.tenant is not None and with_code.tenant.tenant_id == own.tenant_id
    foreign = await acts.resolve_tenant(ResolveTenantInput(code=codes[other.tenant_id], bot_id=row["bot_id"]))
    assert foreign.tenant is None and foreign.problem == "unknown_code"
    # The invite link names the fleet's bot.
    link = (await get_onboarding(postgres.pool, settings, own.tenant_id))["deep_link"]
    assert link == f"https://t.me/{row['username']}?start={codes[own.tenant_id]}"


async def test_the_cli_adds_lists_and_removes_a_bot(
    postgres: Postgres, outside: Outside, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`autodispatch bot …` as parsed and run by the CLI (in-process: a child interpreter per command
    costs seconds on a loaded machine), against the session's database and Telegram emulator."""
    settings = Settings(
        _env_file=None, database_url=postgres.owner_dsn, app_database_url=postgres.app_dsn, data_dir=tmp_path,
        telegram_bot_token=new_bot_token(), telegram_api_base=outside.telegram.base_url,
        oauth_token_keys=generate_key(),
    )  # fmt: skip

    async def cli(*args: str) -> tuple[int, str, str]:
        parsed = build_parser().parse_args(list(args))
        # In a thread: the command runs its own event loop; the emulator answering getMe runs on this one.
        try:
            code = await asyncio.to_thread(cmd_bot, parsed, settings)
        except AdminError as exc:
            code = 1
            print(f"error: {exc}", file=sys.stderr)
        out = capsys.readouterr()
        return code, out.out, out.err

    tenant = (await add_driver(postgres.pool, "x@example.com")).tenant_id
    token = new_bot_token()
    code, out, err = await cli("bot", "add", "--tenant", tenant, "--token", token)
    assert code == 0, err
    bot_id = json.loads(out)["bot_id"]
    code, out, _ = await cli("bot", "list", "--tenant", tenant, "--json")
    assert [b["bot_id"] for b in json.loads(out)] == [bot_id] and token not in out
    default = settings.telegram_bot_token.get_secret_value()  # type: ignore[union-attr]
    code, _, err = await cli("bot", "add", "--tenant", tenant, "--token", default)
    assert code == 1 and "default bot" in err
    code, out, _ = await cli("bot", "rotate-keys")
    assert code == 0 and out.startswith("re-encrypted")
    assert (await cli("bot", "remove", "--tenant", tenant, "--bot", str(bot_id)))[0] == 0
    assert json.loads((await cli("bot", "list", "--tenant", tenant, "--json"))[1]) == []


async def test_a_fleets_bot_sends_its_own_invoice(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    """/subscribe on a fleet's bot: the invoice comes from that bot (its payment then arrives there)."""
    settings = stack_settings(
        tmp_path, postgres, temporal_dev, outside, oauth_token_keys=generate_key(),
        billing_price_minor=49_900, telegram_payments_provider_token="284685063:TEST:sandbox",
    )  # fmt: skip
    default_token = settings.telegram_bot_token.get_secret_value()  # type: ignore[union-attr]
    async with running(settings) as stack:
        chat, _, tenant = await new_driver(stack, outside)
        token = new_bot_token()
        await register(stack, tenant, token)
        user_writes(outside, token, chat, "/subscribe")

        def invoices(on: str) -> list[dict]:
            return [m for m in outside.telegram.sent(on, chat) if m["method"] == "sendInvoice"]

        (invoice,) = await until(lambda: invoices(token), what="the invoice from the fleet's bot")
        assert invoice["invoice"]["total_amount"] == 49_900
        assert invoices(default_token) == []
