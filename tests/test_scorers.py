"""Step scorers: the two PRM recipes through real vLLM engines against independent transformers
computations, and Monte-Carlo rollouts with a scripted engine and with the real one.

At most one vLLM engine is alive at a time: the tiny Qwen-PRM engine lives inside its own test,
which runs before the first test that opens the module's SmolLM2 engine.
"""

from __future__ import annotations

import gc
import math
from pathlib import Path

import pytest

from pipeline.answers import AnswerChecker
from pipeline.config import PRMConfig, RolloutsConfig, load
from pipeline.engines.base import Completion, EngineSettings, EngineStats, Request
from pipeline.model_files import EMBEDDED_MODEL, resolve_model
from pipeline.scorers.base import StepToScore
from pipeline.scorers.prm import QWEN_PRM_SYSTEM, MathShepherdPRM, QwenPRM
from pipeline.scorers.rollouts import RolloutScorer

# Math-Shepherd PRM inputs of growing depth, and the same paths for Qwen-PRM.
PATHS = [
    StepToScore("What is 2 + 3?", "5", (), "We add 2 and 3."),
    StepToScore("What is 2 + 3?", "5", ("We add 2 and 3.",), "2 + 3 = 6, so the answer is \\boxed{6}."),
    StepToScore("What is 4 + 4?", "8", ("We add 4 and 4.",), "4 + 4 = 8, so the answer is \\boxed{8}."),
    StepToScore(
        "Sara has 2 pens and gets 2 more. How many pens does she have?",
        "4",
        ("Sara starts with 2 pens.", "She gets 2 more, so we add."),
        "2 + 2 = 4, so she has \\boxed{4} pens.",
    ),
]


def _vllm(model: str, **kwargs):
    from pipeline.engines.vllm_engine import VLLMEngine

    # float32 so the comparisons below test the recipe, not bf16 rounding (see the tolerances).
    settings = EngineSettings(
        name="scorer",
        kind="vllm",
        model=model,
        dtype="float32",
        kv_cache_gib=0.5,  # room for a few prompts of max_model_len, beside the other engines
        **kwargs,
    )
    return VLLMEngine(settings)


def _release(engine) -> None:
    engine.close()
    gc.collect()


# ---------------------------------------------------------------- Qwen-PRM on a tiny random model

SEPARATOR = "<extra_0>"


def _tiny_qwen_prm(dest: Path) -> Path:
    """A 2-layer Qwen2ForProcessRewardModel with random weights and SmolLM2's tokenizer plus the
    separator token. The score head is scaled up so rewards spread over (0, 1) instead of ~0.5."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, Qwen2Config, Qwen2Model

    tok = AutoTokenizer.from_pretrained(resolve_model(EMBEDDED_MODEL))
    tok.add_special_tokens({"additional_special_tokens": [SEPARATOR]})
    cfg = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        initializer_range=0.2,
        tie_word_embeddings=False,
        architectures=["Qwen2ForProcessRewardModel"],
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    state = {f"model.{k}": v.contiguous() for k, v in Qwen2Model(cfg).state_dict().items()}
    h = cfg.hidden_size
    # The remote-code model's head: Linear(h, h), ReLU, Linear(h, 2), both with bias.
    state["score.0.weight"] = torch.randn(h, h) / math.sqrt(h)
    state["score.0.bias"] = torch.randn(h) * 0.1
    state["score.2.weight"] = torch.randn(2, h) * 4 / math.sqrt(h)
    state["score.2.bias"] = torch.randn(2) * 0.1
    cfg.save_pretrained(dest)
    tok.save_pretrained(dest)
    save_file(state, str(dest / "model.safetensors"), metadata={"format": "pt"})
    return dest


def _qwen_rewards_by_hand(path: Path, items: list[StepToScore]) -> list[list[float]]:
    """The model card's computation: the closed chat, softmax of the head at every separator, label 1."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, Qwen2Model

    tok = AutoTokenizer.from_pretrained(path)
    body, info = Qwen2Model.from_pretrained(path, dtype=torch.float32, output_loading_info=True)
    assert not info["missing_keys"]
    head = load_file(str(path / "model.safetensors"))
    rewards = []
    for item in items:
        messages = [
            {"role": "system", "content": QWEN_PRM_SYSTEM},
            {"role": "user", "content": item.problem},
            {"role": "assistant", "content": SEPARATOR.join([*item.previous, item.step]) + SEPARATOR},
        ]
        ids = tok(tok.apply_chat_template(messages, tokenize=False), return_tensors="pt").input_ids
        with torch.no_grad():
            hidden = body(input_ids=ids).last_hidden_state[0]
            x = torch.relu(hidden @ head["score.0.weight"].T + head["score.0.bias"])
            probs = (x @ head["score.2.weight"].T + head["score.2.bias"]).softmax(-1)
        rewards.append(probs[ids[0] == tok.convert_tokens_to_ids(SEPARATOR), 1].tolist())
    return rewards


@pytest.mark.vllm
@pytest.mark.torch
def test_qwen_prm_through_vllm_pooling_matches_the_model_card_computation(tmp_path):
    path = _tiny_qwen_prm(tmp_path / "tiny-qwen-prm")
    expected = _qwen_rewards_by_hand(path, PATHS)
    # vLLM warns that this architecture does not support prefix caching.
    engine = _vllm(
        str(path), max_model_len=2048, enable_prefix_caching=False, vllm_kwargs={"runner": "pooling"}
    )
    try:
        prm = QwenPRM(engine, PRMConfig())
        scores, tokens = prm.score(PATHS)
        assert engine.stats.calls == 1 and engine.stats.requests == len(PATHS) and tokens == 0
        rows = engine.token_label_probs([prm.prompt(item) for item in PATHS], SEPARATOR)
    finally:
        _release(engine)
    # One reward per step at the separators, the newest one the score; float32 both ways: measured
    # differences up to 1e-6.
    for item, row, want, sc in zip(PATHS, rows, expected, scores):
        assert len(row) == len(want) == len(item.previous) + 1
        assert [r[1] for r in row] == pytest.approx(want, abs=1e-5)
        assert sum(row[-1]) == pytest.approx(1.0, abs=1e-5)
        assert sc.score == pytest.approx(want[-1], abs=1e-5)
        assert sc.verdict == ("correct" if sc.score >= 0.5 else "incorrect") and sc.rationale == ""
    assert max(s.score for s in scores) - min(s.score for s in scores) > 0.05, "rewards too alike to test"


# ---------------------------------------------------------------- Math-Shepherd PRM on SmolLM2


@pytest.fixture(scope="module")
def smol():
    engine = _vllm(EMBEDDED_MODEL)
    yield engine
    _release(engine)


def _shepherd_by_hand(prompts: list[str]) -> list[float]:
    """P(+) / (P(+) + P(-)) at the last position, with transformers in float32."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(EMBEDDED_MODEL)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    plus, minus = tok.convert_tokens_to_ids(["+", "-"])
    out = []
    with torch.no_grad():
        for prompt in prompts:
            logits = model(tok(prompt, return_tensors="pt").input_ids).logits[0, -1]
            out.append(logits[[plus, minus]].softmax(-1)[0].item())
    return out


def test_math_shepherd_scores_match_transformers(smol):
    # The model card's input, written out independently of MathShepherdPRM.prompt.
    prompts = [
        "What is 2 + 3? We add 2 and 3. ки",
        "What is 2 + 3? We add 2 and 3. ки\n2 + 3 = 6, so the answer is \\boxed{6}. ки",
        "What is 4 + 4? We add 4 and 4. ки\n4 + 4 = 8, so the answer is \\boxed{8}. ки",
        "Sara has 2 pens and gets 2 more. How many pens does she have? Sara starts with 2 pens. ки\n"
        "She gets 2 more, so we add. ки\n2 + 2 = 4, so she has \\boxed{4} pens. ки",
    ]
    calls = smol.stats.calls
    scores, tokens = MathShepherdPRM(smol, PRMConfig()).score(PATHS)
    assert smol.stats.calls == calls + 1 and tokens == 0
    # float32 on both sides: measured |difference| <= 3e-6 (bf16 vLLM, the CPU default for dtype
    # auto, differs by up to 8e-3 on these prompts).
    assert [s.score for s in scores] == pytest.approx(_shepherd_by_hand(prompts), abs=1e-4)
    assert all(
        s.verdict == ("correct" if s.score >= 0.5 else "incorrect") and not s.rationale for s in scores
    )


def test_math_shepherd_score_does_not_depend_on_the_batch(smol):
    prm = MathShepherdPRM(smol, PRMConfig())
    together = [s.score for s in prm.score(PATHS)[0]]
    reversed_ = [s.score for s in prm.score(PATHS[::-1])[0]][::-1]
    alone = [prm.score([item])[0][0].score for item in PATHS]
    # Measured identical on CPU; the margin allows for batch-shape-dependent kernels elsewhere.
    assert reversed_ == pytest.approx(together, abs=1e-5)
    assert alone == pytest.approx(together, abs=1e-5)


def test_next_token_logprobs_are_the_model_log_probabilities(smol):
    (lp,) = smol.next_token_logprobs(["What is 2 + 3? We add 2 and 3. ки"], ["+", "-", "\n"])
    assert set(lp) == {"+", "-", "\n"} and all(v < 0 for v in lp.values())
    assert sum(math.exp(v) for v in lp.values()) < 1


def test_multi_token_candidates_are_refused(smol):
    with pytest.raises(ValueError, match="not one"):
        smol.next_token_logprobs(["What is 2 + 3?"], ["+", "ки"])


def test_math_shepherd_arithmetic_with_a_scripted_engine():
    class Scripted:
        label = "scripted"

        def __init__(self):
            self.prompts: list[list[str]] = []

        def next_token_logprobs(self, prompts, candidates):
            self.prompts.append(list(prompts))
            return [{"+": math.log(0.3), "-": math.log(0.1)}, {"+": math.log(0.01), "-": math.log(0.5)}]

    engine = Scripted()
    scores, tokens = MathShepherdPRM(engine, PRMConfig(threshold=0.7)).score(PATHS[:2])
    assert [s.score for s in scores] == pytest.approx([0.75, 0.01 / 0.51])
    assert [s.verdict for s in scores] == ["correct", "incorrect"] and tokens == 0
    assert engine.prompts == [
        [
            "What is 2 + 3? We add 2 and 3. ки",
            ("What is 2 + 3? We add 2 and 3. ки\n2 + 3 = 6, so the answer is \\boxed{6}. ки"),
        ]
    ]


# ---------------------------------------------------------------- Monte-Carlo rollouts


@pytest.fixture(scope="module")
def checker():
    with AnswerChecker(1, 5) as c:
        yield c


@pytest.fixture(scope="module")
def policy():
    return load().policy


class ScriptedPolicy:
    """Rollouts scripted per step (the end of the partial assistant turn); counts calls."""

    label = "scripted"

    def __init__(self, script: dict[str, list[tuple[str, str]]]):
        self.script = script
        self.stats = EngineStats()
        self.requests: list[Request] = []

    def generate(self, requests):
        self.stats.calls += 1
        self.requests.extend(requests)
        out = []
        for r in requests:
            step = next(s for s in self.script if r.messages[-1][1].endswith(s + "\n\n"))
            out.append([Completion(text, 7, finish) for text, finish in self.script[step][: r.n]])
        return out

    def close(self):
        pass


OPEN = [
    StepToScore("What is 2 + 3?", "5", (), "We add 2 and 3.", seed=11),
    StepToScore("What is 4 + 4?", "8", ("We add 4 and 4.",), "Four plus four.", seed=22),
]
SCRIPT = {
    "We add 2 and 3.": [
        ("2 + 3 = 5, so \\boxed{5}.", "stop"),
        ("The answer is \\boxed{6}.", "stop"),
        ("2 + 3 is", "length"),
        ("So \\boxed{5}", "stop"),
    ],
    "Four plus four.": [
        ("\\boxed{9}", "stop"),
        ("\\boxed{7}", "stop"),
        ("eight", "stop"),
        ("\\boxed{16}", "stop"),
    ],
}


def test_rollout_share_hard_label_and_terminal_steps(checker, policy):
    engine = ScriptedPolicy(SCRIPT)
    terminal = [
        StepToScore("What is 2 + 3?", "5", ("We add 2 and 3.",), "2 + 3 = \\boxed{5}."),
        StepToScore("What is 2 + 3?", "5", ("We add 2 and 3.",), "2 + 3 = \\boxed{6}."),
    ]
    scorer = RolloutScorer(engine, checker, RolloutsConfig(m=4, max_tokens=64), policy)
    scores, tokens = scorer.score([OPEN[0], terminal[0], OPEN[1], terminal[1]])
    assert [(s.verdict, s.score) for s in scores] == [
        ("correct", 0.5),
        ("correct", 1.0),
        ("incorrect", 0.0),
        ("incorrect", 0.0),
    ]
    assert scores[0].rationale == "2 of 4 rollouts reach the reference answer (1 cut off at the token limit)"
    assert scores[2].rationale == "0 of 4 rollouts reach the reference answer"
    assert "verifies" in scores[1].rationale and "does not verify" in scores[3].rationale
    # One batch, only the open steps rolled out; their generated tokens counted.
    assert engine.stats.calls == 1 and len(engine.requests) == 2 and tokens == 2 * 4 * 7
    for request, item in zip(engine.requests, OPEN):
        assert request.n == 4 and request.seed == item.seed and request.stop == () and request.continue_final
        assert request.max_tokens == 64
        assert request.messages[-1] == ("assistant", "".join(s + "\n\n" for s in (*item.previous, item.step)))


def test_terminal_steps_need_no_engine_call(checker, policy):
    engine = ScriptedPolicy(SCRIPT)
    done = StepToScore("What is 4 + 4?", "8", (), "4 + 4 = \\boxed{8}.")
    scores, tokens = RolloutScorer(engine, checker, RolloutsConfig(), policy).score([done])
    assert engine.stats.calls == 0 and tokens == 0
    assert (scores[0].verdict, scores[0].score) == ("correct", 1.0)


def test_a_failed_rollout_leaves_the_step_unscored(checker, policy):
    class Failing(ScriptedPolicy):
        def generate(self, requests):
            self.stats.calls += 1
            return [[Completion("", 0, "error", error="timed out")] * r.n for r in requests]

    scores, _ = RolloutScorer(Failing({}), checker, RolloutsConfig(), policy).score(OPEN[:1])
    assert scores[0].score is None and scores[0].verdict == "unknown" and "timed out" in scores[0].problem


def test_rollouts_with_the_real_policy(smol, checker, policy):
    # Wrong first steps, so the 135M policy sometimes recovers: with these seeds 2 of 4 and 1 of 4.
    items = [
        StepToScore("What is 2 + 3?", "5", (), "First, 2 + 3 = 6.", seed=44),
        StepToScore("What is 4 + 4?", "8", (), "4 + 4 is the same as 2 times 4, which is 6.", seed=33),
    ]
    m = 4
    scorer = RolloutScorer(smol, checker, RolloutsConfig(m=m, max_tokens=64), policy)
    calls = smol.stats.calls
    first, tokens = scorer.score(items)
    again, _ = scorer.score(items)
    assert smol.stats.calls == calls + 2 and tokens > 0
    for s in first:
        assert 0.0 <= s.score <= 1.0 and (s.score * m).is_integer()
        assert s.verdict == ("correct" if s.score > 0 else "incorrect")
        assert s.rationale.startswith(f"{round(s.score * m)} of {m} rollouts")
    assert [s.score for s in again] == [s.score for s in first]
