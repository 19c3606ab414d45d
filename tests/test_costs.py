"""What a run cost: each stage's engine tokens at the engine's prices, failures beside them, the cache's
saving, per method and per journey; an engine without prices is named, never priced at zero."""

from __future__ import annotations

import pytest

from pipeline.config import ConfigError, load
from pipeline.costs import run_costs


def _engine(prompt: int, completion: int, **more) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, **more}


STAGES = {
    "trees": {
        "engines": {"policy": _engine(1_000_000, 200_000, retries=2), "critic": _engine(500_000, 100_000)}
    },
    "thoughts": {
        "engines": {"policy": _engine(100_000, 50_000)},
        "methods": {"propose-critique": {"engines": {"policy": _engine(100_000, 50_000)}}, "tree": {}},
    },
    "polish": {"engines": {"policy": _engine(0, 0, cache_hits=4, cache_hit_tokens=1_000_000, failed=1)}},
}


def settings(critic_prices):
    cfg = load(
        overrides={
            "engines": {
                "policy": {
                    "kind": "openai",
                    "model": "m",
                    "base_url": "http://x/v1",
                    "prices": {"input": 1.0, "output": 2.0},
                },
                "critic": {
                    "kind": "openai",
                    "model": "c",
                    "base_url": "http://x/v1",
                    "prices": critic_prices,
                },
            }
        }
    )
    return cfg.engines


def test_each_stage_is_priced_at_its_engines_prices_and_the_total_adds_up():
    costs = run_costs(settings({"input": 0.5, "output": 4.0}), STAGES, journeys=4)
    trees = costs["by_stage"]["trees"]
    assert trees["policy"]["usd"] == 1.0 + 0.4 and trees["critic"]["usd"] == 0.25 + 0.4
    assert trees["total"]["usd"] == pytest.approx(2.05) and trees["total"]["retries"] == 2
    assert costs["by_stage"]["thoughts"]["total"]["usd"] == pytest.approx(0.2)
    assert costs["by_method"]["propose-critique"]["usd"] == pytest.approx(0.2)
    assert costs["total"]["usd"] == pytest.approx(2.25) and costs["per_journey_usd"] == pytest.approx(
        2.25 / 4
    )
    # Replies from the cache: their generated tokens at the output price; the failure stands beside.
    polish = costs["by_stage"]["polish"]["policy"]
    assert (polish["usd"], polish["saved_usd"], polish["failed_requests"]) == (0.0, 2.0, 1)
    # The thoughts stage's engines already hold its methods': counted once.
    assert costs["by_engine"]["policy"]["input_tokens"] == 1_100_000


def test_an_engine_without_prices_is_named_and_not_priced_at_zero():
    costs = run_costs(settings(None), STAGES, journeys=0)
    assert costs["unpriced_engines"] == ["critic"] and costs["by_stage"]["trees"]["critic"]["usd"] is None
    assert (
        costs["by_engine"]["critic"]["usd"] is None
        and costs["by_engine"]["critic"]["output_tokens"] == 100_000
    )
    # The total covers the priced engines; no journeys, no price per journey.
    assert costs["total"]["usd"] == pytest.approx(1.4 + 0.2) and costs["per_journey_usd"] is None


@pytest.mark.parametrize(
    "prices", [{"input": 1.0}, {"input": -1, "output": 1}, {"input": 1, "output": 1, "usd": 1}]
)
def test_bad_prices_name_the_field(prices):
    with pytest.raises(ConfigError, match="prices"):
        settings(prices)
