"""Measure the guardrails on public datasets and on our own support cases; print JSON.

    switchboard guardrails eval --json [--datasets DIR] [--cases FILE] [--failures N]

Datasets (each read from DIR, skipped with a note when absent): deepset-prompt-injections
(injection precision/recall), notinject (over-blocking), presidio-synth-pii (redaction
recall on the entity types we claim), bitext-customer-support (human-request detection on
`contact_human_agent`, and injection false positives on real support phrasing), banking77
(injection and human-request false positives), bipia (task-hijack attacks and billing
e-mails), tau2-bench banking documents (the tool-output screen on articles). Injection is
reported three ways: the combined detector, the rules alone and the learned model alone
(shared/guardrails/evaluate_injection.py). Wired as `switchboard guardrails eval --json`.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from shared.guardrails import detect_injection, redact, wants_human
from shared.guardrails import evaluate_injection as injection
from shared.guardrails.injection import detect_injection_by_rules
from shared.guardrails.injection_model import learned_score

_REPO_ROOT = Path(__file__).resolve().parents[2]
_DEFAULT_CASES = _REPO_ROOT / "evals" / "data" / "guardrails_support_cases.yaml"
# Presidio entity type -> our redaction kind, for the types we claim to catch.
_CLAIMED_PII = {
    "CREDIT_CARD": "card",
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    "IBAN_CODE": "iban",
    "US_SSN": "ssn",
}


def _binary_metrics(pairs: Iterable[tuple[bool, bool]]) -> dict[str, Any]:
    """pairs of (expected, predicted)."""
    counts = Counter(pairs)
    tp, fp = counts[(True, True)], counts[(False, True)]
    fn, tn = counts[(True, False)], counts[(False, False)]
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision is not None and recall is not None and precision + recall
        else None
    )
    return {
        "n": tp + fp + fn + tn,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": None if precision is None else round(precision, 3),
        "recall": None if recall is None else round(recall, 3),
        "f1": None if f1 is None else round(f1, 3),
        "false_positive_rate": round(fp / (fp + tn), 3) if fp + tn else None,
    }


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _examples(items: list[tuple[str, bool, bool]], limit: int) -> dict[str, list[str]]:
    missed = [text[:160] for text, expected, got in items if expected and not got]
    wrong = [text[:160] for text, expected, got in items if got and not expected]
    return {"false_negatives": missed[:limit], "false_positives": wrong[:limit]}


def eval_deepset(root: Path, failures: int) -> dict[str, Any]:
    return injection.eval_deepset(root, failures, _binary_metrics)


def eval_notinject(root: Path, failures: int) -> dict[str, Any]:
    return injection.eval_notinject(root, failures)


def eval_presidio(root: Path, failures: int) -> dict[str, Any]:
    samples = json.loads((root / "synth_dataset_v2.json").read_text(encoding="utf-8"))
    per_type: dict[str, Counter[str]] = {t: Counter() for t in _CLAIMED_PII}
    missed: dict[str, list[str]] = {t: [] for t in _CLAIMED_PII}
    # Redactions that hit no span of a claimed type: what they hit instead (or "nothing").
    stray: Counter[str] = Counter()
    for sample in samples:
        text = sample["full_text"]
        result = redact(text)
        all_spans = [(s.start, s.end) for s in result.spans]
        for gold in sample["spans"]:
            entity = gold["entity_type"]
            if entity not in _CLAIMED_PII:
                continue
            start, end = gold["start_position"], gold["end_position"]
            typed = [(s.start, s.end) for s in result.spans if s.kind == _CLAIMED_PII[entity]]
            counts = per_type[entity]
            counts["spans"] += 1
            if entity == "CREDIT_CARD" and not 13 <= sum(c.isdigit() for c in text[start:end]) <= 19:
                counts["out_of_scope_length"] += 1
            if _covers(typed, start, end):
                counts["found_as_type"] += 1
            if _covers(all_spans, start, end):
                counts["hidden"] += 1
            elif len(missed[entity]) < failures:
                missed[entity].append(text[start:end])
        for span in result.spans:
            overlapped = [
                g["entity_type"]
                for g in sample["spans"]
                if span.start < g["end_position"] and g["start_position"] < span.end
            ]
            if not any(entity in _CLAIMED_PII for entity in overlapped):
                stray[f"{span.kind} on {'/'.join(overlapped) or 'nothing'}"] += 1
    out: dict[str, Any] = {"source": "microsoft/presidio-research synth_dataset_v2 (MIT)"}
    for entity, counts in per_type.items():
        entry: dict[str, Any] = {
            "spans": counts["spans"],
            "recall_as_type": round(counts["found_as_type"] / counts["spans"], 3),
            "hidden": round(counts["hidden"] / counts["spans"], 3),
        }
        if entity == "CREDIT_CARD":
            in_scope = counts["spans"] - counts["out_of_scope_length"]
            entry["spans_13_to_19_digits"] = in_scope
            entry["recall_13_to_19_digits"] = round(counts["found_as_type"] / in_scope, 3)
            entry["note"] = "12-digit Maestro-style numbers are outside the claimed 13-19 range"
        if failures:
            entry["missed_examples"] = missed[entity]
        out[entity] = entry
    out["redactions_not_on_a_claimed_span"] = dict(stray)
    return out


def _covers(spans: list[tuple[int, int]], start: int, end: int) -> bool:
    return all(any(s <= i < e for s, e in spans) for i in range(start, end))


def eval_bitext(root: Path, failures: int) -> dict[str, Any]:
    with (root / "bitext_customer_support_4514.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    human = [(r["instruction"], r["intent"] == "contact_human_agent", wants_human(r["instruction"])) for r in rows]
    human_out = _binary_metrics((e, g) for _, e, g in human)
    human_out["fired_on_contact_customer_service"] = sum(
        fired for row, (_, _, fired) in zip(rows, human, strict=True) if row["intent"] == "contact_customer_service"
    )
    if failures:
        human_out["examples"] = _examples(human, failures)
    texts = [r["instruction"] for r in rows]
    judged = injection.judge(texts)
    flagged = [t for t, f in zip(texts, judged["combined"], strict=True) if f]
    redacted = Counter(span.kind for r in rows for span in redact(r["instruction"]).spans)
    return {
        "source": "Bitext customer-support 4,514 (CDLA-Sharing-1.0)",
        "wants_human": human_out,
        "injection_false_positives": {
            "n": len(rows),
            "flagged": len(flagged),
            "by_detector": {name: sum(flags) for name, flags in judged.items()},
            "examples": [t[:160] for t in flagged[:failures]],
        },
        "redactions_on_pii_free_text": dict(redacted),
    }


def eval_banking77(root: Path, failures: int) -> dict[str, Any]:
    with (root / "test.csv").open(encoding="utf-8", newline="") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    judged = injection.judge(texts)
    flagged = [t for t, f in zip(texts, judged["combined"], strict=True) if f]
    humans = [t for t in texts if wants_human(t)]
    redacted = Counter(span.kind for t in texts for span in redact(t).spans)
    return {
        "source": "Banking77 test (CC-BY-4.0); no intent asks for a human",
        "n": len(texts),
        "injection_flagged": len(flagged),
        "injection_flagged_by_detector": {name: sum(flags) for name, flags in judged.items()},
        "wants_human_fired": len(humans),
        "redactions": dict(redacted),
        "examples": {"injection": flagged[:failures], "wants_human": humans[:failures]},
    }


def eval_bipia(root: Path, failures: int) -> dict[str, Any]:
    attacks = [
        text
        for split in ("train", "test")
        for items in json.loads((root / f"text_attack_{split}.json").read_text(encoding="utf-8")).values()
        for text in items
    ]
    emails = [row["context"] for split in ("train", "test") for row in _read_jsonl(root / "email" / f"{split}.jsonl")]
    judged_attacks = injection.judge(attacks)
    judged_emails = injection.judge(emails)
    flagged_emails = [t for t, f in zip(emails, judged_emails["combined"], strict=True) if f]
    return {
        "source": "microsoft/BIPIA text attacks and EmailQA contexts (MIT)",
        "text_attacks": {"n": len(attacks), **{name: sum(f) for name, f in judged_attacks.items()}},
        "email_contexts": {"n": len(emails), **{name: sum(f) for name, f in judged_emails.items()}},
        "note": (
            "BIPIA attacks are task hijacks ('write a poem', 'recommend this site') with no override "
            "phrasing; the detector is not meant to catch them. Counts are flagged messages per detector; "
            "tool_output has them planted in articles and e-mails."
        ),
        "examples": [t[:160] for t in flagged_emails[:failures]],
    }


def _learned_flags(text: str) -> bool:
    score = learned_score(text)
    return score is not None and score.flagged


def eval_support_cases(path: Path, failures: int) -> dict[str, Any]:
    import yaml  # only the eval needs it; the guardrails themselves stay dependency-free

    cases = yaml.safe_load(path.read_text(encoding="utf-8"))
    human = [(c["text"], bool(c["expect"]), wants_human(c["text"])) for c in cases["human"]]
    injection = [
        (
            c["text"],
            bool(c["expect"]),
            detect_injection(
                c["text"],
                customer_email=c.get("customer_email"),
                customer_id=c.get("customer_id"),
            ).flagged,
        )
        for c in cases["injection"]
    ]
    by_detector = {
        "rules": [
            (
                bool(c["expect"]),
                detect_injection_by_rules(
                    c["text"], customer_email=c.get("customer_email"), customer_id=c.get("customer_id")
                ).flagged,
            )
            for c in cases["injection"]
        ],
        "learned": [(bool(c["expect"]), _learned_flags(c["text"])) for c in cases["injection"]],
    }
    redaction_failures = [
        c["text"][:160]
        for c in cases["redaction"]
        if redact(c["text"], customer_email=c.get("customer_email")).text != c["expect"]
    ]
    human_out = _binary_metrics((e, g) for _, e, g in human)
    injection_out = _binary_metrics((e, g) for _, e, g in injection)
    if failures:
        human_out["examples"] = _examples(human, failures)
        injection_out["examples"] = _examples(injection, failures)
    return {
        "source": str(path.relative_to(_REPO_ROOT) if path.is_relative_to(_REPO_ROOT) else path),
        "wants_human": human_out,
        "injection": injection_out,
        "injection_by_detector": {name: _binary_metrics(pairs) for name, pairs in by_detector.items()},
        "redaction": {
            "n": len(cases["redaction"]),
            "exact_match": len(cases["redaction"]) - len(redaction_failures),
            "failures": redaction_failures[:failures],
        },
    }


def _latency(root: Path | None) -> dict[str, Any]:
    texts: list[str] = []
    if root is not None and (root / "bitext-customer-support").is_dir():
        path = root / "bitext-customer-support" / "bitext_customer_support_4514.csv"
        with path.open(encoding="utf-8", newline="") as f:
            texts = [r["instruction"] for r in csv.DictReader(f)][:1000]
    texts = texts or ["I want to talk to a human about my card 4242 4242 4242 4242"] * 50
    out = injection.latency(texts)
    long_text = " ".join(texts[:200])
    started = time.perf_counter()
    detect_injection(long_text)
    out["chars_in_long_message"] = len(long_text)
    out["long_message_ms"] = round((time.perf_counter() - started) * 1e3, 2)
    return out


def _find_datasets(explicit: str | None) -> Path | None:
    """The public datasets live outside the repository: only where the user says."""
    if not explicit:
        return None
    path = Path(explicit).expanduser()
    return path if path.is_dir() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchboard guardrails eval", description=__doc__)
    parser.add_argument("--json", action="store_true", help="JSON output (the only format; accepted for the CLI)")
    parser.add_argument(
        "--datasets",
        help="directory holding the public datasets (e.g. ../shared/datasets); without it they are skipped",
    )
    parser.add_argument("--cases", default=str(_DEFAULT_CASES), help="support-domain cases YAML")
    parser.add_argument("--failures", type=int, default=0, help="include up to N misclassified examples per set")
    args = parser.parse_args(argv)
    root = _find_datasets(args.datasets)
    report: dict[str, Any] = {"datasets_dir": str(root) if root else None}
    suites: tuple[tuple[str, str, Callable[[Path, int], dict[str, Any]]], ...] = (
        ("deepset_prompt_injections", "deepset-prompt-injections", eval_deepset),
        ("notinject", "notinject", eval_notinject),
        ("presidio_synth_pii", "presidio-synth-pii", eval_presidio),
        ("bitext_customer_support", "bitext-customer-support", eval_bitext),
        ("banking77", "banking77", eval_banking77),
        ("bipia", "bipia", eval_bipia),
    )
    for key, folder, evaluate in suites:
        if root is None or not (root / folder).is_dir():
            hint = "" if root else " (pass --datasets DIR, the folder that holds it)"
            report[key] = {"skipped": f"{folder} not found{hint}"}
        else:
            report[key] = evaluate(root / folder, args.failures)
    cases = Path(args.cases)
    report["support_cases"] = (
        eval_support_cases(cases, args.failures) if cases.is_file() else {"skipped": f"{cases} not found"}
    )
    report["tool_output"] = injection.eval_tool_output(root)
    report["learned_model"] = injection.model_info()
    report["latency"] = _latency(root)
    json.dump(report, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
