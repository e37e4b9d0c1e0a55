"""Which API key the `openai` client really sends, per aqueduct.yml provider.

Requests go through the real openai + instructor clients to an httpx2 MockTransport that
records the Authorization header and answers like the scripted LLM server.
"""

from __future__ import annotations

import json

import httpx2
import pytest

from aqueduct_dagster.blueprint.models import Agent
from aqueduct_dagster.config import AgentConnection
from aqueduct_dagster.errors import ConfigError
from aqueduct_dagster.healing.agent import LLMDiagnoser
from tests.healing.test_agent import failure_package, good_patch
from tests.support.scripted_llm import ScriptedLLM


def sent_authorization(config: AgentConnection) -> str | None:
    """Run one diagnosis round; the Authorization header the endpoint received."""
    script, seen = ScriptedLLM([good_patch()]), []

    def answer(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.headers.get("authorization"))
        return httpx2.Response(200, json=script.respond(json.loads(request.content)))

    client = httpx2.Client(transport=httpx2.MockTransport(answer))
    diagnoser = LLMDiagnoser.from_config(config, http_client=client).for_policy(Agent(approval="human"))
    assert diagnoser.propose(failure_package(), []).patch is not None
    assert len(seen) == 1
    return seen[0]


@pytest.fixture(autouse=True)
def _no_base_url(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def test_openai_without_a_configured_key_sends_openai_api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    assert sent_authorization(AgentConnection(provider="openai", model="gpt-test")) == "Bearer sk-from-env"


def test_a_configured_key_wins_over_openai_api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("TEAM_OPENAI_KEY", "sk-configured")
    config = AgentConnection(provider="openai", model="gpt-test", api_key="${TEAM_OPENAI_KEY}")
    assert sent_authorization(config) == "Bearer sk-configured"


def test_openai_without_any_key_is_a_config_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError) as caught:
        LLMDiagnoser.from_config(AgentConnection(provider="openai", model="gpt-test"))
    assert "OPENAI_API_KEY" in str(caught.value)


def test_a_compatible_server_never_gets_the_openai_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    config = AgentConnection(provider="ollama", model="llama3", base_url="http://127.0.0.1:11434/v1")
    assert sent_authorization(config) == "Bearer not-needed"
