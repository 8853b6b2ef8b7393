"""The built-in detectors: what each finds, how a candidate is checked, and its mask.

Every detector is a `Rule`: a full regular expression (Python's, with its boundaries), its
`candidate` (the same without look-arounds and back-references, in RE2's syntax: whatever the
full expression matches, the candidate matches at the same place, whatever surrounds it, so
one combined RE2 search of the candidates, over a string or over a whole batch's wire bytes,
tells whether any detector can match, and where to try the full expression), an optional
`check` on the matched text (Luhn, mod-97, digit counts) and the mask used in `mask` mode.

Boundaries: a match may not touch a word character on either side, so ids, hashes and hex
strings that merely contain a run of digits are left alone. A JSON string escape (`\\n`,
`\\t` ...) before a match also counts as a boundary: the letter of the escape would
otherwise hide a secret that follows a newline inside JSON text.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

# Start boundary: no word character or '-' before, or a JSON escape like \n just before.
START = r"(?:(?<![\w-])|(?<=\\[nrtbf]))"
END = r"(?![\w-])"


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: str          # full expression; group `secret`, when present, is the part replaced
    candidate: str        # RE2 syntax: `pattern` without its look-arounds and back-references
    mask: str             # replacement in mask mode ("{last4}" is the last four digits)
    check: Callable[[str], int] | None = None  # accepted length of the candidate (0: not this kind)
    flags: int = 0

    def compiled(self) -> re.Pattern[str]:
        return re.compile(self.pattern, self.flags)


def digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def luhn(number: str) -> bool:
    """The Luhn mod-10 checksum over a string of digits."""
    total = 0
    for position, ch in enumerate(reversed(number)):
        value = ord(ch) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def card_brand_length(number: str) -> bool:
    """The number's prefix is a card network's (Visa, Mastercard, Amex, Discover, Diners, JCB,
    UnionPay) and its length one that network issues. Why: Luhn alone passes one random number
    in ten; with the issuer ranges, nanosecond timestamps (they start with 1) and most numeric
    ids never qualify."""
    n, head2, head4 = len(number), int(number[:2]), int(number[:4])
    if number[0] == "4":
        return n in (13, 16, 19)
    if 51 <= head2 <= 55 or 2221 <= head4 <= 2720:
        return n == 16
    if head2 in (34, 37):
        return n == 15
    if number.startswith("6011") or head2 == 65 or 644 <= int(number[:3]) <= 649:
        return 16 <= n <= 19
    if head2 in (36, 38, 39) or 300 <= int(number[:3]) <= 305:
        return 14 <= n <= 19
    if 3528 <= head4 <= 3589:
        return 16 <= n <= 19
    if head2 == 62:
        return 16 <= n <= 19
    return False


def is_card(text: str) -> int:
    number = digits(text)
    return len(text) if 13 <= len(number) <= 19 and card_brand_length(number) and luhn(number) else 0


# IBAN lengths by country (ISO 13616 registry): an unknown country or a wrong length is no IBAN.
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}


def is_iban(text: str) -> int:
    """Mod-97 over the country's length of characters; a longer candidate (a capitalised word
    after the last group) is cut to that length."""
    want = IBAN_LENGTHS.get(text[:2])
    compact = text.replace(" ", "")
    if want is None or len(compact) < want:
        return 0
    compact = compact[:want]
    rearranged = compact[4:] + compact[:4]
    if int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 != 1:
        return 0
    taken = 0
    for length, ch in enumerate(text, 1):  # the length in `text`, spaces included
        taken += ch != " "
        if taken == want:
            return length
    return 0


def _balanced(text: str) -> str:
    """The longest start of `text` with balanced parentheses: a ')' closing the surrounding text
    ("(call +1 415 555 2671)") or a '(' opening it ("+1 415 555 2671 (mobile") ends the number."""
    depth = 0
    for index, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if depth < 0:
            return text[:index].rstrip(" .-")
    while text.count("(") > text.count(")"):
        text = text[:text.rfind("(")].rstrip(" .-")
    return text


def is_phone(text: str) -> int:
    """8 to 15 digits in all (E.164's limit, with the country code), at most 5 separators and
    balanced parentheses (a closing one of the surrounding text is given back)."""
    text = _balanced(text)
    count = sum(ch.isdigit() for ch in text)
    separators = sum(ch in " .-" for ch in text)
    return len(text) if 8 <= count <= 15 and separators <= 5 and text.count("(") == text.count(")") <= 1 else 0


def is_bearer(text: str) -> int:
    """A token, not prose: 16+ characters in mixed case, or 8+ with a digit or a token
    punctuation mark ("the bearer of bad news" and "bearer credentials" stay)."""
    trimmed = text.rstrip(".")  # a sentence's full stop after the token
    token = trimmed.split()[-1]
    mixed_case = not token[1:].islower() and not token.isupper()
    tokenish = len(token) >= 16 and mixed_case or len(token) >= 8 and any(
        ch.isdigit() or ch in "._~+/=-" for ch in token)
    return len(trimmed) if tokenish else 0


EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}"
IBAN = r"[A-Z]{2}\d{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?)"
PHONE = r"\+[1-9](?:[ .-]?\(?\d\)?){7,14}|\(\d{3}\) ?\d{3}[ .-]\d{4}|\d{3}[.-]\d{3}[.-]\d{4}"
CARD_CANDIDATE = r"\d{13,19}|\d{4}[ -]\d{4}[ -]\d{4}[ -]\d{1,4}(?:[ -]\d{1,3})?|\d{4}[ -]\d{6}[ -]\d{4,5}"
CARD_BODY = (r"(?:\d{13,19}"
             r"|\d{4}([ -])\d{4}\1\d{4}\1\d{1,4}(?:\1\d{1,3})?"   # 4-4-4-4(-3) with one separator kind
             r"|\d{4}([ -])\d{6}\2\d{4,5})")                     # Amex 4-6-5, Diners 4-6-4

RULES: dict[str, Rule] = {rule.name: rule for rule in (
    # Secrets first: where two rules overlap, the earlier one in this order wins.
    Rule("jwt", START + r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*",
         r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*", "[REDACTED:jwt]"),
    Rule("bearer", START + r"[Bb]earer[ \t]+(?P<secret>[A-Za-z0-9._~+/=-]{8,})" + r"(?![\w~+/=.-])",
         r"[Bb]earer[ \t]+[A-Za-z0-9._~+/=-]{8,}", "[REDACTED:bearer]", is_bearer),
    Rule("sk_api_key", START + r"sk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_-]{20,}" + END,
         r"sk-[A-Za-z0-9_-]{20,}", "[REDACTED:sk_api_key]"),
    Rule("aws_access_key", r"(?:(?<![A-Za-z0-9])|(?<=\\[nrtbf]))(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Za-z0-9])",
         r"A[KS]IA[0-9A-Z]{16}", "[REDACTED:aws_access_key]"),
    Rule("github_token", START + r"(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})" + END,
         r"gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}", "[REDACTED:github_token]"),
    Rule("slack_token", START + r"xox[abposr]-[A-Za-z0-9-]{10,}" + END,
         r"xox[abposr]-[A-Za-z0-9-]{10,}", "[REDACTED:slack_token]"),
    Rule("email", START.replace(r"\w-", r"\w.%+-") + EMAIL + r"(?![\w-]|:[\w/])", EMAIL, "[REDACTED:email]"),
    Rule("iban", START + IBAN + END, IBAN, "[REDACTED:iban]", is_iban),
    Rule("card", START + r"(?<!\d[.,])" + CARD_BODY + r"(?![\w-])(?![.,]\d)", CARD_CANDIDATE, "****{last4}",
         is_card),
    Rule("phone", r"(?:(?<![\w+.-])|(?<=\\[nrtbf]))(?:" + PHONE + r")(?![\w.-]*\d)(?![\w+])", PHONE,
         "[REDACTED:phone]", is_phone),
)}

SECRET_RULES = ("jwt", "bearer", "sk_api_key", "aws_access_key", "github_token", "slack_token")
PII_RULES = ("email", "phone", "iban")
