"""The alphabet of a captcha scheme: label validation and CTC encoding (blank is 0)."""

from __future__ import annotations

import hmac
import string
from dataclasses import dataclass

from farm.exceptions import SettingError

__all__ = ["Charset", "DEFAULT_ALPHABET", "DEFAULT_CHARSET", "ALPHABETS", "parse_alphabet", "answer_matches",
           "MAX_ANSWER_CHARS"]

DEFAULT_ALPHABET = string.digits + string.ascii_uppercase

# names `--alphabet` accepts; any other value is taken as the characters themselves, in order
ALPHABETS = {
    "default": DEFAULT_ALPHABET,
    "digits": string.digits,
    "upper": string.ascii_uppercase,
    "lower": string.ascii_lowercase,
    "lower+digits": string.digits + string.ascii_lowercase,
    "mixed": string.digits + string.ascii_uppercase + string.ascii_lowercase,
}


def parse_alphabet(text: str) -> str:
    """A named alphabet (see ALPHABETS) or the literal characters; SettingError when empty or repeated."""
    alphabet = ALPHABETS.get(text, text)
    if not alphabet or any(c.isspace() for c in alphabet):
        raise SettingError(f"alphabet: {text!r} is neither a name ({', '.join(ALPHABETS)}) nor a string of "
                           f"characters without spaces")
    repeated = sorted({c for c in alphabet if alphabet.count(c) > 1})
    if repeated:
        raise SettingError(f"alphabet: {text!r} repeats {''.join(repeated)!r}")
    return alphabet


@dataclass(frozen=True)
class Charset:
    """An ordered alphabet; class index i+1 is alphabet[i], 0 is the CTC blank."""

    alphabet: str = DEFAULT_ALPHABET
    min_length: int = 4
    max_length: int = 6

    def __post_init__(self):
        if not self.alphabet:
            raise ValueError("alphabet: must not be empty")
        if len(set(self.alphabet)) != len(self.alphabet):
            raise ValueError(f"alphabet: repeated characters in {self.alphabet!r}")
        if not 1 <= self.min_length <= self.max_length:
            raise ValueError(f"length: need 1 <= min ({self.min_length}) <= max ({self.max_length})")

    @property
    def num_classes(self) -> int:
        """Characters plus the CTC blank."""
        return len(self.alphabet) + 1

    @property
    def case_sensitive(self) -> bool:
        """An alphabet holding both cases of a letter tells them apart; otherwise case is ignored."""
        return any(c.lower() in self.alphabet and c.upper() in self.alphabet and c.lower() != c.upper()
                   for c in self.alphabet)

    def normalize(self, text: str) -> str:
        """The form of a typed answer to compare with the truth (case folded when case means nothing)."""
        text = text.strip()
        if self.case_sensitive or not any(c.isalpha() for c in self.alphabet):
            return text
        if all(c.isupper() or not c.isalpha() for c in self.alphabet):
            return text.upper()
        return text.lower()

    def validate(self, text: str) -> str:
        """Return text if it is a valid label, else raise ValueError naming what is wrong."""
        if not isinstance(text, str) or not text:
            raise ValueError("text: empty label; a captcha needs at least one character")
        for position, char in enumerate(text):
            if char not in self.alphabet:
                raise ValueError(f"text: character {char!r} at position {position} of {text!r} "
                                 f"is not in the alphabet {self.alphabet!r}")
        if not self.min_length <= len(text) <= self.max_length:
            raise ValueError(f"text: {text!r} has {len(text)} characters; "
                             f"this charset allows {self.min_length} to {self.max_length}")
        return text

    def label(self, text: str) -> str:
        """The label a typed answer stands for (after the case rule); ValueError naming what is wrong."""
        return self.validate(self.normalize(text))

    def encode(self, text: str) -> list[int]:
        """Class indices of a valid label, after the case rule (1-based; 0 is the blank)."""
        text = self.label(text)
        return [self.alphabet.index(c) + 1 for c in text]

    def decode(self, indices) -> str:
        """Text of class indices, blanks dropped (no CTC collapsing: see model.greedy_decode)."""
        return "".join(self.alphabet[i - 1] for i in indices if i > 0)

    def covers(self, alphabet: str) -> str:
        """The characters of `alphabet` this charset cannot read, after its case rule ('' when none)."""
        return "".join(dict.fromkeys(c for c in alphabet if self.normalize(c) not in self.alphabet))

    def to_dict(self) -> dict:
        return {"alphabet": self.alphabet, "min_length": self.min_length, "max_length": self.max_length}

    @classmethod
    def from_dict(cls, data: dict) -> "Charset":
        return cls(data["alphabet"], int(data["min_length"]), int(data["max_length"]))


DEFAULT_CHARSET = Charset()


MAX_ANSWER_CHARS = 64  # longer input is no answer to any scheme; refuse it before normalising


def answer_matches(charset: Charset, truth: str, answer) -> bool:
    """Constant-time comparison of a typed answer with the truth, after the charset's case rule."""
    if not isinstance(answer, str) or len(answer) > MAX_ANSWER_CHARS:
        return False
    return hmac.compare_digest(charset.normalize(answer).encode(), charset.normalize(truth).encode())
