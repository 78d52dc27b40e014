"""The Temporal client every entry point uses: the encrypting data converter, namespace, TLS or API key."""

from __future__ import annotations

from temporalio.client import Client, TLSConfig
from temporalio.converter import DataConverter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from autodispatch.codec import PayloadKey, build_data_converter, parse_keys, sandbox_keys
from autodispatch.settings import Settings, SettingsError
from autodispatch.tracing import temporal_interceptors


def payload_keys(settings: Settings, *, required: bool = True) -> list[PayloadKey] | None:
    """The configured keys; the sandbox's own (generated under DATA_DIR); None when opted out.

    `required=False` (replaying an exported file) tolerates no keys: plain histories still replay."""
    if settings.payload_keys is not None:
        return parse_keys(settings.payload_keys.get_secret_value())
    if settings.sandbox:
        return parse_keys(sandbox_keys(settings.data_dir))
    if not settings.payload_encryption or not required:
        return None
    raise SettingsError(
        "configuration error: AUTODISPATCH_PAYLOAD_KEYS: not set; Temporal histories would hold orders in "
        "plain text (set a key, see docs/operations.md, or AUTODISPATCH_PAYLOAD_ENCRYPTION=false to opt out)"
    )


def data_converter(settings: Settings, *, required: bool = True) -> DataConverter:
    """The one data converter of every client, worker and replayer the project builds."""
    return build_data_converter(payload_keys(settings, required=required))


_runtime: Runtime | None = None
_sdk_metrics_address: str | None = None


def telemetry_runtime(settings: Settings) -> Runtime:
    """One SDK runtime per process, its worker and client metrics served in Prometheus format on a
    loopback port; GET /metrics appends them to ours (sdk_metrics_address)."""
    global _runtime, _sdk_metrics_address
    if _runtime is None:
        from autodispatch.embedded import free_port

        address = f"127.0.0.1:{settings.sdk_metrics_port or free_port()}"
        try:
            _runtime = Runtime(
                telemetry=TelemetryConfig(
                    metrics=PrometheusConfig(
                        bind_address=address,
                        counters_total_suffix=True,
                        unit_suffix=True,
                        durations_as_seconds=True,
                    )
                )
            )
        except (RuntimeError, ValueError) as exc:
            raise SettingsError(f"configuration error: AUTODISPATCH_SDK_METRICS_PORT: {exc}") from exc
        _sdk_metrics_address = address
    return _runtime


def sdk_metrics_address() -> str | None:
    return _sdk_metrics_address


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
        data_converter=data_converter(settings),
        runtime=telemetry_runtime(settings),
        interceptors=temporal_interceptors(),
        tls=tls,
        api_key=settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None,
    )


async def register_search_attributes(client: Client) -> None:
    """Register TenantId/ChatId/OrderId if missing (an external cluster, the time-skipping test server).
    The embedded dev server registers them at start; Temporal Cloud needs them created in its console."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
    from temporalio.service import RPCError

    from autodispatch.embedded import SEARCH_ATTRIBUTES

    ns = client.namespace
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=ns)
        )
        known = set(existing.custom_attributes) | set(existing.system_attributes)
    except RPCError:
        known = set()  # the time-skipping test server cannot list them, but can add them
    missing = {
        name: IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{kind.upper()}")
        for name, kind in SEARCH_ATTRIBUTES.items()
        if name not in known
    }
    if not missing:
        return
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=ns, search_attributes=missing)
        )
    except RPCError as exc:
        if "already" not in str(exc).lower():
            raise
