"""The Temporal client every entry point uses: pydantic data converter, namespace, TLS or API key."""

from __future__ import annotations

from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter

from autodispatch.settings import Settings


async def connect(settings: Settings, address: str | None = None) -> Client:
    target = address or settings.temporal_address or f"127.0.0.1:{settings.temporal_grpc_port}"
    tls: TLSConfig | bool = False
    if settings.temporal_tls_cert_file and settings.temporal_tls_key_file:
        tls = TLSConfig(
            client_cert=settings.temporal_tls_cert_file.read_bytes(),
            client_private_key=settings.temporal_tls_key_file.read_bytes(),
        )
    elif settings.temporal_tls or settings.temporal_api_key is not None:
        tls = True  # Temporal Cloud with an API key always speaks TLS
    return await Client.connect(
        target,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        tls=tls,
        api_key=settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None,
    )
