"""What a run cost: each engine's tokens priced by its `prices` (USD per million tokens), per stage, per
engine, per thoughts method and per accepted journey.

Tokens are what the engine returned usage for, whatever the pipeline did with the reply afterwards: a
polish attempt the guard rejected, a critic reply that was not the JSON and a step that was pruned are
all paid. HTTP calls that returned nothing (timeouts, dropped connections, 5xx, then retried) have no
usage to price; their counts stand beside the cost. Replies served from the response cache are saved
cost; the cache keeps their generated tokens, not their prompts', so the saving is output tokens only.
"""

from __future__ import annotations

from pipeline.engines import EngineSettings


def priced(engine: dict, prices: dict | None) -> dict:
    """Tokens and USD of one engine's stats (usd None where the engine has no prices).

    >>> priced({"prompt_tokens": 2_000_000, "completion_tokens": 500_000, "cache_hit_tokens": 100_000,
    ...         "retries": 3, "failed": 1}, {"input": 0.15, "output": 0.6})
    {'input_tokens': 2000000, 'output_tokens': 500000, 'usd': 0.6, 'saved_output_tokens': 100000, 'saved_usd': 0.06, 'retries': 3, 'failed_requests': 1}
    >>> priced({"prompt_tokens": 10, "completion_tokens": 5}, None)["usd"] is None
    True
    """
    tokens_in, tokens_out = engine.get("prompt_tokens", 0), engine.get("completion_tokens", 0)
    saved = engine.get("cache_hit_tokens", 0)
    usd = saved_usd = None
    if prices is not None:
        usd = round((tokens_in * prices["input"] + tokens_out * prices["output"]) / 1e6, 6)
        saved_usd = round(saved * prices["output"] / 1e6, 6)
    return {
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "usd": usd,
        "saved_output_tokens": saved,
        "saved_usd": saved_usd,
        "retries": engine.get("retries", 0),
        "failed_requests": engine.get("failed", 0),
    }


_MONEY = ("usd", "saved_usd")
_COUNTS = ("input_tokens", "output_tokens", "saved_output_tokens", "retries", "failed_requests")


def _total(rows: list[dict]) -> dict:
    """Entries of `priced` added up; usd None when none of them had prices.

    >>> _total([])["input_tokens"], _total([])["usd"]
    (0, None)
    """
    out: dict = {k: sum(r[k] for r in rows) for k in _COUNTS}
    for k in _MONEY:
        priced_rows = [r[k] for r in rows if r[k] is not None]
        out[k] = round(sum(priced_rows), 6) if priced_rows else None
    return {
        k: out[k]
        for k in (
            "input_tokens",
            "output_tokens",
            "usd",
            "saved_output_tokens",
            "saved_usd",
            "retries",
            "failed_requests",
        )
    }


def _by_engine(engines: dict[str, dict], settings: dict[str, EngineSettings]) -> dict[str, dict]:
    return {
        name: priced(stats, settings[name].prices if name in settings else None)
        for name, stats in sorted(engines.items())
    }


def used_engines(costs: dict) -> list[tuple[str, str, dict]]:
    """(stage, engine, priced entry) for every engine a stage used, the stage totals left out."""
    return [
        (stage, name, e)
        for stage, engines in costs["by_stage"].items()
        for name, e in engines.items()
        if name != "total" and (e["input_tokens"] or e["output_tokens"] or e["saved_output_tokens"])
    ]


def run_costs(settings: dict[str, EngineSettings], stages: dict[str, dict], journeys: int) -> dict:
    """stats.json's `costs`: per stage and engine, per engine, per thoughts method, the total and the
    total per accepted journey."""
    by_stage = {stage: _by_engine(s.get("engines") or {}, settings) for stage, s in stages.items()}
    flat = [row for engines in by_stage.values() for row in engines.values()]
    names = sorted({n for engines in by_stage.values() for n in engines})
    methods = (stages.get("thoughts") or {}).get("methods") or {}
    total = _total(flat)
    return {
        "currency": "USD",
        "prices": {n: settings[n].prices for n in names if n in settings and settings[n].prices},
        "unpriced_engines": [n for n in names if n not in settings or not settings[n].prices],
        "by_stage": {
            stage: {**engines, "total": _total(list(engines.values()))} for stage, engines in by_stage.items()
        },
        "by_engine": {n: _total([e[n] for e in by_stage.values() if n in e]) for n in names},
        "by_method": {
            m: _total(list(_by_engine(s.get("engines") or {}, settings).values())) for m, s in methods.items()
        },
        "total": total,
        "per_journey_usd": round(total["usd"] / journeys, 6)
        if total["usd"] is not None and journeys
        else None,
    }
