"""`redaction`: mask or hash secrets and personal data in spans before anything is stored or sent.

With otelcol contrib's redaction processor as the anchor (same config names: `allow_all_keys`,
`allowed_keys`, `ignored_keys`, `blocked_key_patterns`, `blocked_values`, `allowed_values`,
`redact_all_types`, `hash_function`, `summary`), plus built-in detectors switchable by name:
card numbers (Luhn-checked, with the card networks' prefixes and lengths), emails, phone
numbers (international `+` form and North American groupings), IBANs (mod-97 and the
country's length), `sk-`/`sk-proj-` API keys, AWS access key ids, JWTs, `Bearer` tokens,
GitHub and Slack tokens. Each match is masked (`[REDACTED:email]`; cards keep their last four
digits, `****1111`, as PCI DSS allows) or hashed (`hmac:<hex>`, keyed HMAC-SHA256: equal
values, however they were spaced, give equal hashes, so a reader can still join on them).

What it promises:
- It applies to resource, scope, span, span event (GenAI prompt/completion events, exception
  messages) and link attributes, to strings inside array and kvlist values, and to span
  status messages. Inside a string that holds JSON (`gen_ai.input.messages`, `gen_ai.prompt`,
  `llm.input_messages...`, tool arguments) it redacts each decoded string and writes the
  JSON back valid. Span and event names are kept as they are: they name operations, and
  the trigger detectors and the session explorer group by them.
- Put it first after `memory_limiter`: what it has not seen reaches nothing downstream. A
  batch it changed has its cached wire bytes dropped, so no exporter sends the originals.
- A value it fails to scan (a bug, never the data's fault) is replaced whole, counted under
  rule `failed` and logged without the value: it fails closed, and the span still goes on.
- In a `logs` pipeline it applies the same rules to resource, scope and log record attributes
  and to each record's body (a string, or the strings inside an array or kvlist body).
- It never drops, refuses or delays spans. Redactions are counted by rule in
  `agentdbg_processor_redaction_redacted_values_total{processor,rule}` (rule `allowed_keys`:
  attributes removed for not being allowed); with `summary: info`/`debug` the counts (and
  keys) are also written on the item as otelcol does (`redaction.masked.count` ...).
- Cost: one RE2 search of the detectors' candidate expressions over a batch's wire bytes
  skips a batch with nothing to find; otherwise only the spans whose bytes hold a candidate
  are walked, one RE2 search per string value, and the detectors' full expressions, checks
  (and a JSON parse) run only where a candidate was found.
- Not covered: bytes values, secrets split by a JSON escape inside them (`sk-\\u0061...`),
  and formats no detector or `blocked_values` pattern describes.

Modules: `detectors` (the rules), `config`, `scanner` (one string), `processor` (the batch walk);
the factory is here.
"""
from pipeline.component import Factory, Kind, Signal
from processors.redaction.config import RedactionConfig
from processors.redaction.processor import RedactionProcessor

factory = Factory("redaction", Kind.PROCESSOR, RedactionConfig, RedactionProcessor,
                  signals=frozenset({Signal.TRACES, Signal.LOGS}),
                  description="mask or hash secrets and personal data in attribute values before anything is stored")

__all__ = ["RedactionConfig", "RedactionProcessor", "factory"]
