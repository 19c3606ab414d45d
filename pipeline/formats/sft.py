"""SFT rows from polished thoughts: TRL conversational `messages`, LLaMA-Factory sharegpt, O1-Journey."""

from __future__ import annotations

from pipeline.formats.paths import assistant, user

# GSM8K's answer marker, which the O1-Journey release (GAIR/o1-journey, train.jsonl) puts between the long
# thought and the final answer; its readers split `longCOT` on "\n####" and strip what follows.
O1_JOURNEY_MARKER = "\n#### "


def sft_row(row: dict) -> dict:
    return {
        "messages": user(row["problem"]) + assistant(row["text"]),
        "problem_id": row["problem_id"],
        "thought_id": row["thought_id"],
        "answer": row["answer"],
        "n_steps": row["n_steps"],
        "n_backtracks": row["n_backtracks"],
        "polish_status": row["polish_status"],
    }


def sharegpt_row(row: dict) -> dict:
    """LLaMA-Factory's sharegpt layout with its default tags (from/value, human/gpt).

    >>> sharegpt_row({"problem": "1+1?", "text": "2", "problem_id": "p"})["conversations"][1]
    {'from': 'gpt', 'value': '2'}
    """
    return {
        "conversations": [{"from": "human", "value": row["problem"]}, {"from": "gpt", "value": row["text"]}],
        "problem_id": row["problem_id"],
    }


def sharegpt_info(file_name: str) -> dict:
    """A dataset_info.json entry for a sharegpt parquet beside it."""
    return {"file_name": file_name, "formatting": "sharegpt", "columns": {"messages": "conversations"}}


def o1_journey_row(row: dict) -> dict:
    """The GAIR O1-Journey release layout: the long thought, a "####" line with the final answer, the answer.

    >>> o1_journey_row({"problem": "1+1?", "text": "So \\\\boxed{2}.\\n", "answer": "2"})
    {'question': '1+1?', 'longCOT': 'So \\\\boxed{2}.\\n#### 2', 'answer': '2'}
    """
    return {
        "question": row["problem"],
        "longCOT": row["text"].rstrip() + O1_JOURNEY_MARKER + row["answer"],
        "answer": row["answer"],
    }
