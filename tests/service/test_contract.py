"""openapi.yaml is generated from the code; the committed file must match it."""

from __future__ import annotations

from pathlib import Path

from service import openapi

ROOT = Path(__file__).resolve().parents[2]


def test_committed_contract_matches_the_code() -> None:
    committed = (ROOT / "openapi.yaml").read_text()
    assert committed == openapi.dump(), (
        "openapi.yaml is stale; run `.venv/bin/python -m service.openapi > openapi.yaml`."
    )


def test_every_route_is_in_the_contract() -> None:
    from service.app import create_app
    from service.settings import Settings

    app = create_app(Settings(data_dir=Path("/tmp/mobileconv-contract-test")))
    documented = set(openapi.build()["paths"])
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ("static", "api.index"):
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        assert path in documented, f"{path} is served but not in openapi.yaml"
