"""The injection part of `switchboard guardrails eval`: each set judged three ways.

- ``combined``: `detect_injection`, what the orchestrator runs (the rules, then the model);
- ``rules``: `detect_injection_by_rules`, the rules alone;
- ``learned``: the learned detector alone (both keys), on the unchanged text.

Plus the tool-output screen (`screen_output`) on knowledge-base articles and e-mails, clean
and with an attack planted in them, and the time per call.
"""

from __future__ import annotations

import json
import random
import re
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from shared.guardrails.injection import detect_injection, detect_injection_batch, detect_injection_by_rules
from shared.guardrails.injection_model import learned_scores, process_model
from shared.guardrails.tool_output import screen_output

DETECTORS = ("combined", "rules", "learned")
_REPO_ROOT = Path(__file__).resolve().parents[2]
_SANDBOX_KB = _REPO_ROOT / "shared" / "sandbox" / "kb"
_CARRIER_CHARS = 1200  # what the knowledge tool passes on per section (agents/knowledge/tools.py)
_SEED = 11

Metrics = Callable[[list[tuple[bool, bool]]], dict[str, Any]]


def judge(texts: Sequence[str]) -> dict[str, list[bool]]:
    """Each detector's verdict on each text (no customer to compare ids and emails against)."""
    learned = learned_scores(texts)
    return {
        "combined": [v.flagged for v in detect_injection_batch(texts)],
        "rules": [detect_injection_by_rules(t).flagged for t in texts],
        "learned": [s is not None and s.flagged for s in learned],
    }


def model_info() -> dict[str, Any]:
    model = process_model()
    if model is None:
        return {"loaded": False, "note": "the learned detector is unavailable: 'learned' flags nothing"}
    keep = ("probability_threshold", "similarity_threshold", "train_file", "train_sha256", "train_rows")
    return {"loaded": True, **{k: model.meta[k] for k in keep}, "cross_validation": model.meta["cross_validation"]}


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _is_german(text: str) -> bool:
    hints = {"der", "die", "das", "und", "ist", "nicht", "ich", "sie", "wie", "was", "mit", "für", "ein"}
    return len(set(text.lower().split()) & hints) >= 2


def eval_deepset(root: Path, failures: int, metrics: Metrics) -> dict[str, Any]:
    out: dict[str, Any] = {"source": "deepset/prompt-injections (Apache-2.0)"}
    for split in ("train", "test"):
        rows = _read_jsonl(root / f"{split}.jsonl")
        texts = [r["text"] for r in rows]
        expected = [r["label"] == 1 for r in rows]
        german = [_is_german(t) for t in texts]
        split_out: dict[str, Any] = {}
        for name, flags in judge(texts).items():
            pairs = list(zip(expected, flags, strict=True))
            entry = metrics(pairs)
            entry["german"] = metrics([p for p, g in zip(pairs, german, strict=True) if g])
            entry["not_german"] = metrics([p for p, g in zip(pairs, german, strict=True) if not g])
            if failures and name == "combined":
                entry["examples"] = {
                    "false_negatives": [t[:160] for t, e, f in zip(texts, expected, flags, strict=True) if e and not f][
                        :failures
                    ],
                    "false_positives": [t[:160] for t, e, f in zip(texts, expected, flags, strict=True) if f and not e][
                        :failures
                    ],
                }
            split_out[name] = entry
        out[split] = split_out
    out["note"] = (
        "The rules were written from the train split and the learned detector was fitted on it: train is not a "
        "measurement. No hyper-parameter or threshold was chosen on test, but the rule families added later (misspelt "
        "trigger words, 'ignore what I said before' as a weak cue, instructions about the voice of the answer, "
        "requests for the model's internals, trigger-word games, personas in ES/DE) were written after the "
        "test split's misses had been read: for those kinds of attack test is not blind (docs/guardrails.md)."
    )
    return out


def eval_notinject(root: Path, failures: int) -> dict[str, Any]:
    out: dict[str, Any] = {"source": "InjecGuard NotInject (MIT); every prompt is benign"}
    everything: list[str] = []
    for name, words in (("one", 1), ("two", 2), ("three", 3)):
        prompts = [r["prompt"] for r in json.loads((root / f"NotInject_{name}.json").read_text(encoding="utf-8"))]
        everything += prompts
        out[f"trigger_words_{words}"] = _false_positives(prompts, judge(prompts), 0)
    out["overall"] = _false_positives(everything, judge(everything), failures)
    return out


def _false_positives(texts: Sequence[str], judged: dict[str, list[bool]], failures: int) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(texts)}
    for name, flags in judged.items():
        out[name] = {"false_positives": sum(flags), "false_positive_rate": round(sum(flags) / max(1, len(texts)), 4)}
    if failures:
        out["examples"] = [t[:160] for t, f in zip(texts, judged["combined"], strict=True) if f][:failures]
    return out


def flagged_counts(texts: Sequence[str]) -> dict[str, int]:
    """How many of these benign texts each detector flags."""
    return {name: sum(flags) for name, flags in judge(texts).items()}


# --- tool output ----------------------------------------------------------------------------------


def _sandbox_sections() -> list[str]:
    sections: list[str] = []
    for path in sorted(_SANDBOX_KB.glob("*.md")):
        body = path.read_text(encoding="utf-8").split("---", 2)[-1]
        sections += [part.strip() for part in re.split(r"\n(?=## )", body) if len(part.split()) >= 5]
    return sections


def _plant(carrier: str, attack: str, rng: random.Random) -> str:
    lines = carrier.split("\n")
    at = rng.randrange(len(lines) + 1)
    return "\n".join([*lines[:at], attack, *lines[at:]])


def _withheld(texts: Sequence[str]) -> int:
    return sum(bool(screen_output({"results": [{"title": "Help", "text": t}]}).withheld) for t in texts)


def eval_tool_output(root: Path | None) -> dict[str, Any]:
    """`screen_output` on articles and e-mails as a tool returns them: clean, and with one attack
    planted on a random line (the attack sets are measured, never trained on)."""
    carriers: dict[str, list[str]] = {"sandbox_kb_sections": _sandbox_sections()}
    attacks: dict[str, list[str]] = {}
    if root is not None and (root / "tau2-bench" / "banking_knowledge").is_dir():
        docs = _read_jsonl(root / "tau2-bench" / "banking_knowledge" / "documents.jsonl")
        carriers["tau2_banking_documents"] = [d["content"][:_CARRIER_CHARS] for d in docs]
    if root is not None and (root / "bipia").is_dir():
        emails = [r["context"] for s in ("train", "test") for r in _read_jsonl(root / "bipia" / "email" / f"{s}.jsonl")]
        carriers["bipia_emails"] = [e[:_CARRIER_CHARS] for e in emails]
        bipia = json.loads((root / "bipia" / "text_attack_test.json").read_text(encoding="utf-8"))
        attacks["bipia_test_attacks"] = [t for items in bipia.values() for t in items]
    if root is not None and (root / "deepset-prompt-injections").is_dir():
        rows = _read_jsonl(root / "deepset-prompt-injections" / "test.jsonl")
        attacks["deepset_test_injections"] = [r["text"] for r in rows if r["label"] == 1]
    out: dict[str, Any] = {
        "what": "share of text fields withheld by screen_output (rules then the learned model, per window)"
    }
    for name, texts in carriers.items():
        entry: dict[str, Any] = {"n": len(texts), "clean_withheld": _withheld(texts)}
        rng = random.Random(_SEED)
        for attack_set, planted in attacks.items():
            poisoned = [_plant(rng.choice(texts), attack, rng) for attack in planted]
            caught = _withheld(poisoned)
            entry[f"with_{attack_set}"] = {
                "n": len(poisoned),
                "withheld": caught,
                "rate": round(caught / len(poisoned), 3),
            }
        out[name] = entry
    return out


# --- latency --------------------------------------------------------------------------------------


def latency(texts: Sequence[str]) -> dict[str, Any]:
    """Milliseconds per call, one message at a time as the orchestrator calls it."""
    process_model()  # loading is once per process: not a message's cost
    out: dict[str, Any] = {"messages": len(texts)}
    for name, detect in (("combined", detect_injection), ("rules", detect_injection_by_rules)):
        times = []
        for text in texts:
            started = time.perf_counter()
            detect(text, customer_email="customer@example.com", customer_id="cust_1")
            times.append((time.perf_counter() - started) * 1e3)
        times.sort()
        out[f"{name}_ms_p50"] = round(statistics.median(times), 3)
        out[f"{name}_ms_p95"] = round(times[int(0.95 * (len(times) - 1))], 3)
    return out
