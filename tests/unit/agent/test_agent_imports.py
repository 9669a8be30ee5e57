"""What the agent imports is most of its idle memory (bench/bench_agent_memory.py): aiohttp (~14 MB
resident), cryptography (~10 MB: openssm.agent.openssl_pss signs instead), botocore (~10 MB:
IAM-identity nodes only), PyYAML and click (1.6 MB: ``openssm agent run`` is parsed without it,
openssm.agent.main) must not be loaded by an agent that is registered, connected and idle."""

from __future__ import annotations

import pytest
from tests.unit.client.test_client_imports import loaded_after as modules_after

HEAVY = {"aiohttp", "boto3", "botocore", "click", "cryptography", "yaml"}


def loaded_after(code: str) -> set[str]:
    """Top-level packages imported after running ``code`` in a fresh interpreter."""
    return {name.split(".")[0] for name in modules_after(code)}


@pytest.mark.parametrize(
    "module",
    [
        "openssm.agent.main",  # `openssm agent run`: the runner, credentials, control channel
        "openssm.agent.data_channel",
        "openssm.transport.http_exchange",
    ],
)
def test_the_idle_agent_imports_no_aiohttp_botocore_yaml_or_click(module: str) -> None:
    assert not loaded_after(f"import {module}") & HEAVY


def test_a_yaml_document_still_loads_pyyaml_when_parsed() -> None:
    # The server parses YAML documents: the import moved into the parse, it did not go away.
    loaded = loaded_after(
        "from openssm.protocol import documents\n"
        'documents.parse_document(\'schemaVersion: "1.0"\\nsessionType: Standard_Stream\\n'
        "inputs: {}\\n', 'YAML')"
    )
    assert "yaml" in loaded
