"""The local intent engine: embeddings, intent classifier, entity patterns, offline eval.

- ``embeddings``: all-MiniLM-L6-v2 (int8 ONNX, shipped in PyPI packages) on onnxruntime.
- ``intents``: ``IntentClassifier`` trained on (text, intent) examples; ``load_or_train``.
- ``entities``: ids, amounts, emails and dates by regex; ``extract_entities``.
- ``evaluate``: ``switchboard nlu eval`` on a labelled train/test pair (Banking77).
"""
