"""The real Codex CLI and Claude Code complete a task through the router, with their default
settings, on an OpenAI, an Anthropic and a Gemini route (issue 15's acceptance).

Each agent is asked what ``hello.py`` prints; the route's fake upstream answers with a call to
the agent's own tool (Codex runs ``cat hello.py`` in its sandbox, Claude Code reads the file),
and once the result is back, with :data:`agent_runs.ANSWER`. Checked: the agent exits 0 and prints
the answer, the tool really ran (the request after the call carries the file's text to the
provider, in the provider's own format), and the agent's tools reached the provider.

The CLIs come from npm (``make agents``, pinned in ``tests/agents/package-lock.json``); without
node/npm or that install the module is skipped, saying which. About 30 s.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "agents"))
import agent_runs

REASON = agent_runs.missing()
# e2e by name: the processes start in agent_runs, which conftest.py's search does not reach.
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(REASON is not None, reason=REASON or "")]

RUNS = [
    pytest.param(agent, route, id=f"{agent.name}-{route.model}")
    for agent in agent_runs.AGENTS
    for route in agent.routes
]


@pytest.fixture(scope="module")
def stack() -> Iterator[agent_runs.Stack]:
    assert not agent_runs.stale(), agent_runs.stale()  # the versions the fixtures name
    with agent_runs.stack() as running:
        yield running


@pytest.mark.parametrize(("agent", "route"), RUNS)
def test_agent_completes_a_task(
    stack: agent_runs.Stack, agent: agent_runs.Agent, route: agent_runs.Route, tmp_path: Path
) -> None:
    assert stack.router is not None
    workdir = agent_runs.project(tmp_path)
    stack.script(agent, route, workdir)
    before = len(stack.requests(route))
    done = agent_runs.run(agent, route, stack.router.url, tmp_path, workdir)
    output = f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    assert done.returncode == 0, output
    assert agent_runs.ANSWER in done.stdout, output
    sent = stack.requests(route)[before:]
    # The turn that calls the tool, the turn with its result: nothing refused and retried
    # (Claude Code, refused a system message inside `messages`, tries again without it).
    assert len(sent) == 2, output
    first, last = json.dumps(sent[0].json), json.dumps(sent[-1].json)
    assert f'"{agent.tool}"' in first  # the agent's tool was offered to the provider
    # The file's text went back to the provider as the tool's result: the tool really ran.
    assert "Hello from the router test" not in first
    assert "Hello from the router test" in last
    result = {
        "openai": "function_call_output" if agent is agent_runs.CODEX else '"role": "tool"',
        "anthropic": '"tool_result"',
        "google": '"functionResponse"',
    }[route.fake]
    assert result in last
