"""A seeded corpus for the redaction tests and benchmark, and the checks that it is what it says.

`samples(seed, per_kind)` yields `Sample`s: a generated secret or personal datum of a known
kind (valid by construction: Luhn for cards, mod-97 for IBANs, real formats for tokens)
placed in a sentence, a log line or a JSON chat message at a known offset. `benign(seed, n)`
yields strings that look like what spans carry and must come out unchanged: uuids, trace ids,
timestamps, prices, version strings, code, SQL, URLs, hashes, order numbers, prose.

The redaction tests and benchmark import it; its own checks are in
tests/unit/test_redaction_corpus.py.
"""
from __future__ import annotations

import base64
import json
import random
import string
import uuid
from dataclasses import dataclass
from typing import Iterator

from processors.redaction.detectors import IBAN_LENGTHS, is_iban, luhn

KINDS = ("card", "email", "phone", "iban", "sk_api_key", "aws_access_key", "jwt", "bearer", "github_token",
         "slack_token")
CARD_PREFIXES = {"4": 16, "4 19": 19, "51": 16, "55": 16, "2221": 16, "2720": 16, "34": 15, "37": 15, "6011": 16,
                 "65": 16, "36": 14, "3530": 16, "62": 16}
CONTEXTS = (
    "{}",
    "Please charge {} for the order.",
    "user said: my details are {}, thanks",
    "error: lookup failed for '{}'",
    "line one\n{}\nline three",
    "(see {})",
    "value={};next=1",
    "\t{}\t",
    "Kontakt: {}. Danke!",
    "[{}]",
)


@dataclass(frozen=True)
class Sample:
    kind: str
    secret: str    # exactly the text that must not survive
    text: str      # the secret in its context
    start: int     # text[start:start + len(secret)] == secret


class Maker:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def digits(self, n: int) -> str:
        return "".join(self.rng.choice(string.digits) for _ in range(n))

    def chars(self, alphabet: str, n: int) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def card(self) -> str:
        prefix, length = self.rng.choice(list(CARD_PREFIXES.items()))
        prefix = prefix.split()[0]
        body = prefix + self.digits(length - len(prefix) - 1)
        check = next(d for d in string.digits if luhn(body + d))
        number = body + check
        style = self.rng.choice(["plain", " ", "-"])
        if style == "plain":
            return number
        if length == 15:
            return style.join([number[:4], number[4:10], number[10:]])
        if length == 14:
            return style.join([number[:4], number[4:10], number[10:]])
        return style.join(number[i:i + 4] for i in range(0, length, 4))

    def email(self) -> str:
        local = self.chars(string.ascii_lowercase, self.rng.randint(3, 10))
        if self.rng.random() < 0.5:
            local += self.rng.choice([".", "_", "+"]) + self.chars(string.ascii_lowercase + string.digits, 4)
        domain = self.chars(string.ascii_lowercase, self.rng.randint(3, 9))
        return f"{local}@{domain}.{self.rng.choice(['com', 'io', 'co.uk', 'de', 'example', 'travel'])}"

    def phone(self) -> str:
        choice = self.rng.randrange(4)
        if choice == 0:
            return "+" + self.rng.choice("123456789") + self.digits(self.rng.randint(9, 12))
        if choice == 1:
            return f"+44 20 {self.digits(4)} {self.digits(4)}"
        if choice == 2:
            return f"+1 ({self.rng.randint(201, 989)}) {self.rng.randint(200, 999)}-{self.digits(4)}"
        return f"({self.rng.randint(201, 989)}) {self.rng.randint(200, 999)}-{self.digits(4)}"

    def iban(self) -> str:
        country = self.rng.choice(["DE", "GB", "FR", "ES", "NL", "IT", "CH", "BE", "PL", "SE"])
        length = IBAN_LENGTHS[country]
        if country in ("GB", "NL"):
            bban = self.chars(string.ascii_uppercase, 4) + self.digits(length - 8)
        else:
            bban = self.digits(length - 4)
        numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
        compact = f"{country}{98 - int(numeric) % 97:02d}{bban}"
        assert is_iban(compact)
        if self.rng.random() < 0.5:
            return compact
        return " ".join(compact[i:i + 4] for i in range(0, len(compact), 4))

    def sk_api_key(self) -> str:
        alphabet = string.ascii_letters + string.digits
        return self.rng.choice(["sk-", "sk-proj-", "sk-ant-api03-"]) + self.chars(alphabet + "_-", 40) + \
            self.chars(alphabet, 8)

    def aws_access_key(self) -> str:
        return "AKIA" + self.chars(string.ascii_uppercase + string.digits, 16)

    def jwt(self) -> str:
        def part(document: dict) -> str:
            return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()

        header, payload = part({"alg": "RS256", "typ": "JWT"}), part({"sub": self.digits(8), "iat": 1700000000})
        return f"{header}.{payload}.{self.chars(string.ascii_letters + string.digits + '_-', 43)}"

    def bearer(self) -> str:
        return "Bearer " + self.chars(string.ascii_letters + string.digits + "._-", 32)

    def github_token(self) -> str:
        return self.rng.choice(["ghp_", "gho_", "ghs_"]) + self.chars(string.ascii_letters + string.digits, 36)

    def slack_token(self) -> str:
        return f"xoxb-{self.digits(12)}-{self.digits(13)}-{self.chars(string.ascii_letters + string.digits, 24)}"


def samples(seed: int = 13, per_kind: int = 60) -> Iterator[Sample]:
    maker = Maker(seed)
    for kind in KINDS:
        for index in range(per_kind):
            secret = getattr(maker, kind)()
            context = CONTEXTS[index % len(CONTEXTS)]
            head, _, tail = context.partition("{}")
            yield Sample(kind, secret, head + secret + tail, len(head))


def chat_json(sample: Sample, rng: random.Random) -> str:
    """The sample inside a GenAI chat history as instrumentations write it (`gen_ai.input.messages`)."""
    return json.dumps([
        {"role": "system", "parts": [{"type": "text", "content": "You are a helpful travel agent."}]},
        {"role": "user", "parts": [{"type": "text", "content": sample.text}]},
        {"role": "assistant", "parts": [{"type": "tool_call", "id": f"call_{rng.randrange(10**6)}",
                                         "name": "lookup", "arguments": {"query": sample.text, "limit": 5}}]},
    ])


def benign(seed: int = 17, count: int = 3000) -> list[str]:
    """Strings spans carry that hold no secret: every one must come out unchanged."""
    rng = random.Random(seed)
    makers = [
        lambda: str(uuid.UUID(int=rng.getrandbits(128))),
        lambda: f"{rng.getrandbits(128):032x}",
        lambda: f"{rng.getrandbits(64):016x}",
        lambda: str(rng.randrange(1_600_000_000_000_000_000, 1_800_000_000_000_000_000)),  # ns timestamps
        lambda: str(rng.randrange(1_600_000_000_000, 1_800_000_000_000)),  # ms timestamps
        lambda: f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:"
                f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{rng.randrange(10**6):06d}Z",
        lambda: f"${rng.randint(1, 99)},{rng.randint(100, 999)}.{rng.randint(0, 99):02d}",
        lambda: f"total {rng.randint(1, 99999)}.{rng.randint(0, 99):02d} EUR incl. VAT",
        lambda: f"v{rng.randint(0, 20)}.{rng.randint(0, 99)}.{rng.randint(0, 999)}-rc.{rng.randint(1, 9)}",
        lambda: f"opentelemetry-sdk=={rng.randint(1, 2)}.{rng.randint(0, 40)}.{rng.randint(0, 9)}",
        lambda: f"for i in range({rng.randint(1, 10**6)}):\n    total += values[i] * {rng.random():.6f}",
        lambda: f"SELECT * FROM orders WHERE id = {rng.randrange(10**12)} AND created > "
                f"'2026-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}' LIMIT {rng.randint(1, 500)}",
        lambda: f"https://api.example.com/v2/orders/{rng.randrange(10**9)}?page={rng.randint(1, 99)}&sort=desc",
        lambda: f"{rng.randint(1, 254)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}:"
                f"{rng.randint(1024, 65535)}",
        lambda: f"{rng.getrandbits(256):064x}",
        lambda: base64.b64encode(rng.randbytes(rng.randint(12, 48))).decode(),
        lambda: f"ORD-2026-{rng.randrange(10**6):06d}",
        lambda: f"{rng.randint(1, 5000)}ms elapsed, {rng.randint(1, 128000)} tokens, cost ${rng.random():.4f}",
        lambda: f"pod/agent-worker-{rng.getrandbits(32):08x}-{rng.getrandbits(20):05x}",
        lambda: f'File "/srv/app/agent.py", line {rng.randint(1, 2000)}, in run\n    raise TimeoutError()',
        lambda: f"[{', '.join(str(rng.randint(0, 9999)) for _ in range(rng.randint(3, 12)))}]",
        lambda: "the bearer of this note may pass; key rotation is handled by the skeleton key service",
        lambda: f"matrix shape ({rng.randint(1, 4096)}, {rng.randint(1, 4096)}) dtype float32",
        lambda: f"build {rng.randint(1000, 9999)} {rng.randint(1000, 9999)} {rng.randint(1000, 9999)} passed",
        lambda: f"phone_number_verified=false user_id={rng.randrange(10**10)} retries={rng.randint(0, 9)}",
        lambda: f"git clone git@github.com:org/repo-{rng.randint(1, 99)}.git; commit {rng.getrandbits(160):040x}",
        lambda: f"task-{rng.getrandbits(48):012x} desk-{rng.randrange(10**8)}",
        lambda: json.dumps({"model": "gpt-4o-mini", "temperature": round(rng.random(), 2),
                            "max_tokens": rng.randint(1, 4096), "seed": rng.randrange(10**9)}),
        lambda: f"+{rng.randint(1, 99)}% since last week; {rng.randint(1, 999)} of {rng.randint(1000, 9999)} ok",
        lambda: f"CUSTOMER NAME ACME GMBH BERLIN DE {rng.randint(10, 99)} STREET",
        # A random 16-digit reference: the one shape a card check cannot tell apart (about one in
        # thirty has a card network's prefix and passes Luhn), kept to show that floor.
        lambda: f"ref {rng.randrange(10**15, 10**16)}",
    ]
    return [makers[i % len(makers)]() for i in range(count)]
