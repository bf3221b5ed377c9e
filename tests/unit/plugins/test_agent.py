"""The agent's answer as the controller reads it: exit codes, malformed output, the bootstrap's fixed refusals."""

from __future__ import annotations

import datetime
import json

import pytest

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host import _agent
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._agent import (
    AgentClient,
    HostClock,
    Operation,
    parse_answer,
    refused_language_mode,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import RemoteError

OPERATIONS = [Operation("cert_list", {"store": "My"})]
ANSWER = json.dumps({
    "agent": "xtractuniversal.tls", "protocol": 1,
    "results": [{"id": 1, "op": "cert_list", "status": "ok", "result": {"certificates": []}, "elapsed_ms": 3}],
})
REFUSAL = (
    "xtractuniversal.tls needs PowerShell's FullLanguage mode; this session runs in ConstrainedLanguage (AppLocker or WDAC policy)"
)
# How winrm's stderr carries a thrown error: CLIXML, lines wrapped at the console width, breaks escaped.
CLIXML_REFUSAL = (
    '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
    '<S S="Error">xtractuniversal.tls needs PowerShell\'s FullLanguage mode; this session runs in Constrained_x000D__x000A_</S>'
    '<S S="Error">Language (AppLocker or WDAC policy)_x000D__x000A_</S>'
    '<S S="Error">At line:2 char:75_x000D__x000A_</S></Objs>'
)


def test_a_well_formed_answer_counts_whatever_the_exit_code() -> None:
    # psrp reports rc 1 whenever the error stream had output.
    (result,) = parse_answer(1, ANSWER + "\n", "WARNING: something on the error stream", OPERATIONS)
    assert result.ok and result.result == {"certificates": []}


@pytest.mark.parametrize("stdout", ["", "not json", '{"agent": "someone else", "protocol": 1, "results": []}'])
def test_a_non_zero_exit_code_without_an_answer_is_a_remote_failure(stdout: str) -> None:
    with pytest.raises(RemoteError) as caught:
        parse_answer(1, stdout, "Add-Type : Cannot add type\r\nat line 7", OPERATIONS)
    assert caught.value.msg == "The agent failed on the host (rc=1): Add-Type : Cannot add type"
    assert caught.value.fields["rc"] == 1


def test_exit_code_zero_without_an_answer_is_a_remote_failure() -> None:
    with pytest.raises(RemoteError, match="did not answer with the agent's JSON document"):
        parse_answer(0, "banner only", "", OPERATIONS)


@pytest.mark.parametrize("stderr", [REFUSAL, CLIXML_REFUSAL], ids=["plain", "clixml"])
def test_constrained_language_mode_is_a_clear_failure(stderr: str) -> None:
    with pytest.raises(RemoteError) as caught:
        parse_answer(1, "", stderr, OPERATIONS)
    message = caught.value.msg
    assert message.startswith("PowerShell on the host runs in ConstrainedLanguage mode (an AppLocker or WDAC policy imposes it)")
    assert "needs FullLanguage mode: nothing was run" in message


def test_other_output_is_not_taken_for_the_refusal() -> None:
    assert refused_language_mode("this session runs in ConstrainedLanguage") is None
    assert refused_language_mode(REFUSAL.replace("ConstrainedLanguage", "RestrictedLanguage")) == "RestrictedLanguage"


# -- the host's clock, from every answer ----------------------------------------------------------


def test_each_answer_measures_the_hosts_clock_and_the_best_one_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    start = datetime.datetime(2026, 11, 26, 20, 0, 0, tzinfo=datetime.timezone.utc)
    ticks = iter([0.0, 4.0, 10.0, 11.0, 20.0])  # send and receive of two calls, then the time host_now() is asked
    monkeypatch.setattr(_agent, "utc_now", lambda: start + datetime.timedelta(seconds=next(ticks)))
    answers = iter([
        # The agent ran 1 s and answered at 00:02:03 on the host's clock: its run's middle, 00:02:02.5, against the
        # controller's 00:00:02: 120.5 s ahead, give or take (4 s - 1 s) / 2.
        {"host_time": "2026-11-26T20:02:03.000Z", "host_elapsed_ms": 1000},
        # A shorter round trip (1 s, 0.2 s of it the agent's) measures better: 120.1 s, give or take 0.4 s.
        {"host_time": "2026-11-26T20:02:10.700Z", "host_elapsed_ms": 200},
    ])

    def transport(_command: str, _stdin: bytes) -> tuple[int, str, str]:
        return 0, json.dumps(json.loads(ANSWER) | next(answers)), ""

    agent = AgentClient(transport)
    assert agent.clock is None
    agent.call(OPERATIONS)
    assert agent.clock == HostClock(datetime.timedelta(seconds=120.5), datetime.timedelta(seconds=1.5))
    agent.call(OPERATIONS)
    assert agent.clock == HostClock(datetime.timedelta(seconds=120.1), datetime.timedelta(seconds=0.4))
    assert agent.host_now() == start + datetime.timedelta(seconds=20 + 120.1)
    best = agent.clock
    assert best is not None and best.as_fact() == {"offset_s": 120.1, "uncertainty_s": 0.4}
    assert HostClock.from_fact(best.as_fact()) == best


def test_an_answer_without_the_hosts_time_measures_nothing() -> None:
    agent = AgentClient(lambda _c, _s: (0, ANSWER, ""))
    agent.call(OPERATIONS)
    assert agent.clock is None
    before = datetime.datetime.now(datetime.timezone.utc)
    assert before <= agent.host_now() <= datetime.datetime.now(datetime.timezone.utc)
    for bad in ({"host_time": "yesterday", "host_elapsed_ms": 3}, {"host_time": "2026-11-26T20:02:03.000Z", "host_elapsed_ms": -1}):
        assert HostClock.measured(json.loads(ANSWER) | bad, before, before) is None
