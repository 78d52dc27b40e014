"""temporal-dev.yml: Docker does not run here, so check it parses and names what the README promises."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_compose_file_names_the_documented_services_and_ports() -> None:
    compose = yaml.safe_load((ROOT / "temporal-dev.yml").read_text())
    services = compose["services"]
    assert {"temporal", "temporal-ui", "temporal-postgresql", "app-postgresql", "worker", "bot"} <= set(
        services
    )
    assert "7233:7233" in services["temporal"]["ports"]
    assert "8233:8080" in services["temporal-ui"]["ports"]
    assert "8080:8080" in services["bot"]["ports"]
    assert services["temporal"]["environment"]["DB"].startswith("postgres")
    assert services["worker"]["command"] == ["autodispatch", "worker"]
    assert services["bot"]["command"] == ["autodispatch", "bot"]
    # The app services reach Temporal and Postgres by their compose names.
    assert services["worker"]["environment"]["AUTODISPATCH_TEMPORAL_ADDRESS"] == "temporal:7233"
    assert "app-postgresql" in services["bot"]["environment"]["AUTODISPATCH_DATABASE_URL"]
    # Monitoring: Prometheus with the alert rules, Grafana with the dashboard, from deploy/.
    assert {"prometheus", "grafana"} <= set(services)
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"
    assert services["worker"]["environment"]["AUTODISPATCH_WORKER_METRICS_PORT"] == "9464"
    assert services["temporal-ui"]["environment"]["TEMPORAL_CODEC_ENDPOINT"].endswith("/codec")
    readme = (ROOT / "README.md").read_text()
    assert "temporal-dev.yml" in readme and "8233" in readme
