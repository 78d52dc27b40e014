"""Encrypted Temporal payloads: the codec on its own, then on the real stack with the codec server."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.history.v1 import History
from temporalio.converter import WorkflowSerializationContext

from autodispatch import admin, tenants
from autodispatch.codec import (
    ENCODING,
    KEY_ID,
    TENANT,
    CodecError,
    EncryptionCodec,
    build_data_converter,
    is_encrypted,
    new_key_spec,
    parse_keys,
    payload_tenant,
)
from autodispatch.embedded import EmbeddedTemporal, temporal_cli_path
from autodispatch.replay import replay_file
from autodispatch.settings import Settings, SettingsError, load_settings
from autodispatch.temporal import payload_keys
from schemas.lifecycle import order_workflow_id
from schemas.telegram import main_workflow_id
from tests.api_fixtures import system_key
from tests.conftest import Outside, Postgres, stack_settings, unique_chat_id
from tests.test_e2e import finished, running, send
from workflows.ids import calendar_workflow_id

PHONE = "9161234567"
ADDRESS = "Тверская 7"


def json_payload(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=text.encode())


# -- the codec ----------------------------------------------------------------------------
async def test_payloads_are_sealed_with_the_newest_key_and_any_configured_key_opens_them() -> None:
    old = parse_keys(new_key_spec("2025"))
    codec = EncryptionCodec(old)
    (sealed_old,) = await codec.encode([json_payload('{"tenant_id": "acme", "phone": "+7916"}')])
    assert sealed_old.metadata["encoding"] == ENCODING and sealed_old.metadata[KEY_ID] == b"2025"
    assert b"+7916" not in sealed_old.SerializeToString()

    rotated = EncryptionCodec(parse_keys(new_key_spec("2026")) + old)  # the new key first
    (sealed_new,) = await rotated.encode([json_payload('{"x": 1}')])
    assert sealed_new.metadata[KEY_ID] == b"2026"
    opened = await rotated.decode([sealed_old, sealed_new])
    assert opened[0].data == b'{"tenant_id": "acme", "phone": "+7916"}' and opened[1].data == b'{"x": 1}'

    with pytest.raises(CodecError, match="'2026'.*not in AUTODISPATCH_PAYLOAD_KEYS"):
        await codec.decode([sealed_new])  # the old key alone cannot open what the new one sealed


async def test_plain_payloads_pass_through_decode() -> None:
    codec = EncryptionCodec(parse_keys(new_key_spec()))
    plain = json_payload('{"a": 1}')
    assert await codec.decode([plain]) == [plain]


async def test_the_tenant_tag_is_sealed_with_the_payload() -> None:
    codec = EncryptionCodec(parse_keys(new_key_spec()))
    (sealed,) = await codec.encode([json_payload('{"order": {"tenant_id": "acme"}}')])
    assert payload_tenant(sealed) == "acme"
    forged = Payload()
    forged.CopyFrom(sealed)
    forged.metadata[TENANT] = b"other"  # moving a payload to another tenant breaks it
    with pytest.raises(CodecError, match="altered"):
        await codec.decode([forged])


async def test_a_payload_naming_no_tenant_gets_its_workflows_tenant() -> None:
    codec = EncryptionCodec(parse_keys(new_key_spec()))
    in_workflow = codec.with_context(WorkflowSerializationContext(namespace="default", workflow_id="wf-1"))
    await in_workflow.encode([json_payload('{"tenant_id": "acme"}')])
    (result,) = await in_workflow.encode([json_payload('"just a string"')])
    assert payload_tenant(result) == "acme"
    elsewhere = codec.with_context(WorkflowSerializationContext(namespace="default", workflow_id="wf-2"))
    (other,) = await elsewhere.encode([json_payload('"x"')])
    assert payload_tenant(other) is None


def test_keys_setting_is_checked_with_one_line_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="^configuration error: AUTODISPATCH_PAYLOAD_KEYS: .*32 bytes"):
        load_settings(_env_file=None, payload_keys="k1:c2hvcnQ")
    with pytest.raises(SettingsError, match="AUTODISPATCH_PAYLOAD_KEYS: .*<key id>:<base64url key>"):
        load_settings(_env_file=None, payload_keys="no-separator")
    with pytest.raises(SettingsError, match="appears twice"):
        load_settings(_env_file=None, payload_keys=f"{new_key_spec('a')},{new_key_spec('a')}")


def test_a_missing_key_stops_start_up_outside_sandbox_unless_opted_out(tmp_path: Path) -> None:
    live = {"telegram_bot_token": "1:x", "google_api_endpoint": "http://127.0.0.1:1", "data_dir": tmp_path}
    with pytest.raises(SettingsError, match="AUTODISPATCH_PAYLOAD_KEYS: not set.*PAYLOAD_ENCRYPTION=false"):
        payload_keys(Settings(_env_file=None, **live))  # type: ignore[arg-type]
    assert payload_keys(Settings(_env_file=None, payload_encryption=False, **live)) is None  # type: ignore[arg-type]
    # Sandbox mode: a key generated once under the data dir, the same on every start.
    sandbox = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    first = payload_keys(sandbox)
    assert first and first == payload_keys(sandbox)
    assert (tmp_path / "run" / "payload-keys").stat().st_mode & 0o077 == 0


async def test_opted_out_payloads_stay_plain_in_every_context() -> None:
    converter = build_data_converter(None)  # AUTODISPATCH_PAYLOAD_ENCRYPTION=false
    in_workflow = converter.with_context(WorkflowSerializationContext(namespace="default", workflow_id="wf"))
    (payload,) = await in_workflow.encode([{"tenant_id": "acme"}])
    assert not is_encrypted(payload) and b"acme" in payload.data
    sealed = (await EncryptionCodec(parse_keys(new_key_spec())).encode([payload]))[0]
    with pytest.raises(CodecError, match="AUTODISPATCH_PAYLOAD_KEYS"):
        await in_workflow.decode([sealed])


async def test_failure_messages_are_sealed_too() -> None:
    from temporalio.api.failure.v1 import Failure
    from temporalio.exceptions import ApplicationError

    converter = build_data_converter(parse_keys(new_key_spec()))
    failure = Failure()
    await converter.encode_failure(ApplicationError(f"bad phone +7{PHONE}"), failure)
    assert PHONE.encode() not in failure.SerializeToString()
    back = await converter.decode_failure(failure)
    assert PHONE in str(back)


# -- on the real stack ----------------------------------------------------------------------
def payloads_in(message: object) -> list[Payload]:
    """Every Payload anywhere in a history (inputs, results, failures, memos, summaries), but search
    attributes: Temporal indexes those, they are never encrypted and carry ids only."""
    found: list[Payload] = []

    def walk(m: object) -> None:
        if isinstance(m, Payload):
            found.append(m)
            return
        for field, value in m.ListFields():  # type: ignore[attr-defined]
            if field.type != field.TYPE_MESSAGE or field.message_type.name == "SearchAttributes":
                continue
            if field.name == "marker_recorded_event_attributes" and value.marker_name.startswith("core_"):
                # The SDK core's own markers (patch ids, a local activity's attempt and timing) are
                # written plain; a local activity's result is one of ours and is walked.
                for name, details in value.details.items():
                    if name not in ("data", "patch-data"):
                        walk(details)
                continue
            if field.message_type.GetOptions().map_entry:
                values = list(value.values())
            elif isinstance(value, Message):
                values = [value]
            else:
                values = list(value)
            for v in values:
                walk(v)

    walk(message)
    return found


async def history_of(stack, workflow_id: str) -> History:  # type: ignore[no-untyped-def]
    history = await stack.client.get_workflow_handle(workflow_id).fetch_history()
    return History(events=history.events)


def plain_payloads(history_json: str) -> str:
    """The readable payloads of `temporal workflow show -o json` output, decoded from base64 and joined."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            encoding = (
                base64.b64decode(node.get("metadata", {}).get("encoding", "")) if "data" in node else b""
            )
            if encoding == b"json/plain":
                found.append(base64.b64decode(node["data"]).decode())
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    try:
        walk(json.loads(history_json))
    except ValueError:
        return ""
    return "\n".join(found)


def codec_body(payloads: list[Payload]) -> str:
    return json_format.MessageToJson(Payloads(payloads=payloads))


async def test_an_orders_history_holds_no_plain_personal_data_and_the_codec_server_opens_it_for_its_tenant(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    settings = stack_settings(tmp_path, postgres, temporal_dev, outside)
    async with running(settings) as stack:
        assert stack.pool is not None and stack.bot is not None
        mine = await tenants.create_tenant(stack.pool, settings, f"Fleet {uuid.uuid4().hex[:6]}", source="cli", actor="test")  # fmt: skip
        other = await tenants.create_tenant(stack.pool, settings, f"Other {uuid.uuid4().hex[:6]}", source="cli", actor="test")  # fmt: skip
        calendar_id = f"cal-{uuid.uuid4().hex[:12]}@group.calendar.google.com"
        outside.google.create_calendar(
            calendar_id, owner="driver@example.com", time_zone="Europe/Moscow",
            shares={outside.service_account: "writer"},
        )  # fmt: skip
        chat_id = unique_chat_id()
        await admin.add_driver(
            stack.pool, tenant=mine["tenant_id"], chat_id=chat_id, calendar_id=calendar_id, name="Ivan"
        )
        sent = send(outside, stack, chat_id, f"завтра 9:30 Внуково → {ADDRESS}, 2500₽, Анна +7 {PHONE}")
        result = await finished(stack, sent["update_id"])
        assert result.outcome == "event_created"

        main_id = main_workflow_id(stack.bot.id, sent["update_id"])
        ids = [main_id, order_workflow_id(result.order_id), calendar_workflow_id(result.order_id)]
        histories = {wf: await history_of(stack, wf) for wf in ids if wf}
        assert main_id in histories
        for wf, history in histories.items():
            raw = history.SerializeToString()
            assert PHONE.encode() not in raw and ADDRESS.encode() not in raw, f"{wf}: plain personal data"
            sealed = payloads_in(history)
            assert sealed and all(is_encrypted(p) for p in sealed), wf
            # Every payload of the tenant's order is tagged with it, so its admin can read them all.
            assert {payload_tenant(p) for p in sealed} == {mine["tenant_id"]}, wf

        started = histories[main_id].events[0].workflow_execution_started_event_attributes.input.payloads
        url = f"http://{settings.http_host}:{settings.http_port}/codec/decode"
        body = codec_body(list(started))
        headers = {"Content-Type": "application/json", "X-Namespace": settings.temporal_namespace}
        async with httpx.AsyncClient() as http:
            ok = await http.post(url, content=body, headers={**headers, "X-API-Key": mine["api_key"]})
            assert ok.status_code == 200, ok.text
            (opened,) = json_format.Parse(ok.content, Payloads()).payloads
            assert PHONE in opened.data.decode() and ADDRESS in opened.data.decode()

            anonymous = await http.post(url, content=body, headers=headers)
            assert anonymous.status_code == 401, anonymous.text
            foreign = await http.post(url, content=body, headers={**headers, "X-API-Key": other["api_key"]})
            assert foreign.status_code == 403 and "belongs to tenant" in foreign.text
            assert PHONE not in foreign.text
            viewer = await tenants.create_api_key(
                stack.pool, mine["tenant_id"], role="viewer", source="cli", actor="test"
            )
            seen = await http.post(url, content=body, headers={**headers, "X-API-Key": viewer["api_key"]})
            assert seen.status_code == 403 and "admin or system" in seen.text
            system = await http.post(
                url, content=body, headers={**headers, "X-API-Key": await system_key(stack.pool)}
            )
            assert system.status_code == 200, system.text  # a system key opens every tenant's
            (by_system,) = json_format.Parse(system.content, Payloads()).payloads
            assert PHONE in by_system.data.decode()

            # The UI's preflight from its own origin is allowed; another origin gets no CORS grant.
            ui = settings.codec_origins[0]
            pre = await http.options(url, headers={"Origin": ui, "Access-Control-Request-Method": "POST"})
            assert pre.headers.get("Access-Control-Allow-Origin") == ui
            assert "X-Namespace" in pre.headers.get("Access-Control-Allow-Headers", "")
            evil = await http.options(url, headers={"Origin": "http://evil.example"})
            assert "Access-Control-Allow-Origin" not in evil.headers

            # Encoding for the UI: an admin's payloads are sealed for their own tenant.
            enc = await http.post(
                url.replace("decode", "encode"), content=codec_body([json_payload('"hello"')]),
                headers={**headers, "X-API-Key": mine["api_key"]},
            )  # fmt: skip
            assert enc.status_code == 200, enc.text
            (sealed,) = json_format.Parse(enc.content, Payloads()).payloads
            assert payload_tenant(sealed) == mine["tenant_id"] and b"hello" not in sealed.data

        # An exported encrypted history replays with the keys (`autodispatch replay --file`), not without.
        exported = tmp_path / "exported.json"
        exported.write_text((await stack.client.get_workflow_handle(main_id).fetch_history()).to_json())
        ok, report = await replay_file(exported, settings)
        assert ok, report
        keyless = settings.model_copy(update={"payload_keys": None, "payload_encryption": False})
        ok, report = await replay_file(exported, keyless)
        assert not ok and "AUTODISPATCH_PAYLOAD_KEYS" in report, report

        # Summaries (the UI's one-line description of a workflow) are payloads: sealed too.
        assert stack.client is not None
        summarised = await stack.client.start_workflow(
            "NoWorkerRunsThis", id=f"summary-{uuid.uuid4().hex[:8]}", task_queue=f"tq-{uuid.uuid4()}",
            static_summary=f"order for +7 {PHONE}",
        )  # fmt: skip
        try:
            first = (await history_of(stack, summarised.id)).events[0]
            assert first.user_metadata.HasField("summary") and is_encrypted(first.user_metadata.summary)
            assert PHONE.encode() not in first.SerializeToString()
        finally:
            await summarised.terminate()

        # Temporal's own CLI, as an operator runs it, reads the history decoded through the codec server.
        def show(*auth: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(  # noqa: S603
                [temporal_cli_path(), "workflow", "show", "-w", main_id, "--address", temporal_dev.address,
                 "--namespace", settings.temporal_namespace, "--codec-endpoint", url.removesuffix("/decode"),
                 "-o", "json", *auth],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip

        shown = await asyncio.to_thread(show, "--codec-auth", f"Bearer {mine['api_key']}")
        assert shown.returncode == 0, shown.stderr
        assert PHONE in plain_payloads(shown.stdout) and ADDRESS in plain_payloads(shown.stdout)
        refused = await asyncio.to_thread(show)
        assert PHONE not in plain_payloads(refused.stdout) and PHONE not in refused.stdout + refused.stderr
