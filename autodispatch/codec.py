"""Payloads encrypted before they reach Temporal: AES-256-GCM with key ids, rotation and a tenant tag.

Every payload the project's clients write (inputs, results, signals, memos, summaries, failure
messages) is sealed with the newest key; any configured key opens it, so rotating means putting a new
key first and keeping the old ones until no history needs them. Payloads that are not encrypted (the
committed replay histories, anything written before encryption was on) pass through unchanged.

Each sealed payload names the tenant it belongs to (metadata, bound to the ciphertext as associated data
so it cannot be altered): the `tenant_id` its content names, else the tenant of the workflow it belongs
to, learned from that workflow's other payloads. The codec server lets an admin open only their own
tenant's payloads by that tag.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
TENANT = "autodispatch-tenant"
_AAD_PREFIX = b"autodispatch-payload-v1"
_NONCE = 12
_KID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
KEYS_FILE_NAME = "payload-keys"


class CodecError(Exception):
    """A payload this process cannot open (unknown key id, tampered, no keys configured)."""


@dataclass(frozen=True)
class PayloadKey:
    kid: str
    key: bytes


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_keys(raw: str) -> list[PayloadKey]:
    """`<key id>:<32 bytes, base64url>` comma-separated, newest first. ValueError says what is wrong."""
    keys: list[PayloadKey] = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        kid, sep, encoded = part.partition(":")
        if not sep or not _KID.match(kid):
            raise ValueError(
                "each key must be <key id>:<base64url key> with a key id of letters, digits, '.', '_' or '-'"
            )
        try:
            key = _b64url_decode(encoded.strip())
        except (binascii.Error, ValueError):
            raise ValueError(f"key {kid!r} is not valid base64url") from None
        if len(key) != 32:
            raise ValueError(f"key {kid!r} must be 32 bytes (AES-256), got {len(key)}")
        if any(k.kid == kid for k in keys):
            raise ValueError(f"key id {kid!r} appears twice")
        keys.append(PayloadKey(kid, key))
    if not keys:
        raise ValueError("no key given")
    return keys


def new_key_spec(kid: str | None = None) -> str:
    """A fresh `<key id>:<key>` entry to put first in AUTODISPATCH_PAYLOAD_KEYS."""
    kid = kid or "k" + secrets.token_hex(4)
    return f"{kid}:{base64.urlsafe_b64encode(os.urandom(32)).rstrip(b'=').decode()}"


def sandbox_keys(data_dir: Path) -> str:
    """The sandbox's own key, made once and kept under the data dir so histories stay readable."""
    path = data_dir / "run" / KEYS_FILE_NAME
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(new_key_spec("sandbox-" + secrets.token_hex(3)) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def _find_tenant(value: Any, depth: int = 0) -> str | None:
    """The first `tenant_id` the content names, shallowest first (an order names its own tenant)."""
    if depth > 4:
        return None
    if isinstance(value, dict):
        tenant = value.get("tenant_id")
        if isinstance(tenant, str) and tenant:
            return tenant
        children: Any = value.values()
    elif isinstance(value, list):
        children = value
    else:
        return None
    for child in children:
        if isinstance(child, dict | list):
            found = _find_tenant(child, depth + 1)
            if found:
                return found
    return None


def content_tenant(payload: Payload) -> str | None:
    if payload.metadata.get("encoding") != b"json/plain":
        return None
    try:
        return _find_tenant(json.loads(payload.data))
    except (ValueError, UnicodeDecodeError):
        return None


def payload_tenant(payload: Payload) -> str | None:
    """The tenant an encrypted payload is tagged with (None: no tenant, or not encrypted)."""
    tag = payload.metadata.get(TENANT)
    return tag.decode() if tag else None


def is_encrypted(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == ENCODING


class _TenantBook:
    """workflow id → tenant, learned from tagged payloads; bounded (oldest forgotten first)."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._map: OrderedDict[str, str] = OrderedDict()

    def get(self, workflow_id: str | None) -> str | None:
        if not workflow_id:
            return None
        return self._map.get(workflow_id)

    def learn(self, workflow_id: str | None, tenant: str | None) -> None:
        if not workflow_id or not tenant:
            return
        self._map[workflow_id] = tenant
        self._map.move_to_end(workflow_id)
        while len(self._map) > self.size:
            self._map.popitem(last=False)


# Shared by every codec of the process: the JSON log lines of a workflow name its tenant from it too.
TENANTS = _TenantBook()


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    def __init__(
        self,
        keys: Sequence[PayloadKey],
        *,
        workflow_id: str | None = None,
        book: _TenantBook | None = None,
    ) -> None:
        self.keys = list(keys)
        self._by_id = {k.kid: AESGCM(k.key) for k in self.keys}
        self.workflow_id = workflow_id
        self.book = book or TENANTS

    @property
    def encrypts(self) -> bool:
        return bool(self.keys)

    def with_context(self, context: SerializationContext) -> EncryptionCodec:
        workflow_id = None
        if isinstance(context, WorkflowSerializationContext | ActivitySerializationContext):
            workflow_id = context.workflow_id
        codec = type(self).__new__(type(self))
        codec.keys, codec._by_id, codec.book = self.keys, self._by_id, self.book
        codec.workflow_id = workflow_id
        return codec

    # -- one payload ------------------------------------------------------------------
    def seal(self, payload: Payload, tenant: str | None = None) -> Payload:
        if is_encrypted(payload):
            return payload
        if not self.keys:
            raise CodecError("no payload key configured (AUTODISPATCH_PAYLOAD_KEYS)")
        tenant = tenant or content_tenant(payload) or self.book.get(self.workflow_id)
        self.book.learn(self.workflow_id, tenant)
        newest = self.keys[0]
        nonce = os.urandom(_NONCE)
        sealed = self._by_id[newest.kid].encrypt(nonce, payload.SerializeToString(), _aad(newest.kid, tenant))
        metadata = {"encoding": ENCODING, KEY_ID: newest.kid.encode()}
        if tenant:
            metadata[TENANT] = tenant.encode()
        return Payload(metadata=metadata, data=nonce + sealed)

    def open(self, payload: Payload) -> Payload:
        if not is_encrypted(payload):
            return payload
        kid = payload.metadata.get(KEY_ID, b"").decode()
        aead = self._by_id.get(kid)
        if aead is None:
            known = ", ".join(self._by_id) or "none"
            raise CodecError(
                f"payload sealed with key {kid!r}, which is not in AUTODISPATCH_PAYLOAD_KEYS (known: {known})"
            )
        tenant = payload_tenant(payload)
        try:
            plain = aead.decrypt(payload.data[:_NONCE], payload.data[_NONCE:], _aad(kid, tenant))
        except InvalidTag:
            raise CodecError(f"payload sealed with key {kid!r} does not open: altered or wrong key") from None
        self.book.learn(self.workflow_id, tenant)
        inner = Payload()
        inner.ParseFromString(plain)
        return inner

    # -- PayloadCodec -----------------------------------------------------------------
    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.seal(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.open(p) for p in payloads]


def _aad(kid: str, tenant: str | None) -> bytes:
    return b"\x00".join((_AAD_PREFIX, kid.encode(), (tenant or "").encode()))


class _DecodeOnlyCodec(EncryptionCodec):
    """Keys to read with, nothing to seal with: replays of exported histories without keys."""

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)


def build_data_converter(keys: Sequence[PayloadKey] | None) -> DataConverter:
    """pydantic_data_converter plus the encryption codec (and failure messages sealed too).

    No keys (the operator opted out, or a replay of plain histories): plain JSON, and an encrypted
    payload met on the way fails with a message naming AUTODISPATCH_PAYLOAD_KEYS."""
    from temporalio.contrib.pydantic import pydantic_data_converter

    if not keys:
        return replace(pydantic_data_converter, payload_codec=_DecodeOnlyCodec([]))
    return replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(keys),
        # Error messages and stack traces can quote an order: they travel as payloads too.
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def hint_tenant(converter: DataConverter, workflow_id: str, tenant_id: str | None) -> None:
    """Tell the codec which tenant a workflow about to start belongs to (its input may not say:
    a Telegram update names a chat, the whitelist its tenant)."""
    codec = converter.payload_codec
    if isinstance(codec, EncryptionCodec):
        codec.book.learn(workflow_id, tenant_id)
