"""The server's composition: one node mounts the API, the gateway and the console, and its gateway
runs Run Command and session logging as its extensions (``openssm.server.composition``)."""

from __future__ import annotations

import pathlib

from openssm.bus.inprocess import InProcessBus
from openssm.gateway.jobs import RunCommandJobs
from openssm.gateway.join import SessionJoins
from openssm.gateway.metrics import GatewayMetrics
from openssm.logs.service import SessionLogging
from openssm.server.composition import compose
from openssm.services import ServerConfig, Services
from openssm.store.db import database_url_for, make_engine
from openssm.store.secrets import SecretCipher


def test_a_node_mounts_every_component_and_its_gateway_runs_the_extensions(tmp_path: pathlib.Path) -> None:
    services = Services(  # composing touches neither the database nor the bus: they start with the app
        config=ServerConfig(data_dir=tmp_path),
        engine=make_engine(database_url_for(tmp_path)),
        bus=InProcessBus(),
        cipher=SecretCipher.generate(),
    )
    server = compose(services)
    assert [type(extension) for extension in server.gateway.extensions] == [
        RunCommandJobs,
        SessionLogging,
        GatewayMetrics,
        SessionJoins,
    ]
    assert server.gateway.services is services
    mounted = {
        (route.method, route.resource.canonical) for route in server.app.router.routes() if route.resource
    }
    assert {
        ("POST", "/"),  # API
        ("POST", "/v1/control-channel/{instance_id}"),  # gateway: MGS REST
        ("GET", "/v1/data-channel/{session_id}"),  # gateway: WebSockets
        ("POST", "/console/api/signin"),  # console
        ("GET", "/console/api/nodes"),  # console's JSON routes
        ("GET", "/healthz"),  # health
        ("GET", "/readyz"),
    } <= mounted
