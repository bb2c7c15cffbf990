"""Sentence generators for the synthetic corpus: digit strings and a small voice-assistant language.

Each domain is a function ``(random.Random) -> str`` producing normalized text (lowercase words).
"""

from __future__ import annotations

import random
from typing import Callable

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEENS = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_words(n: int) -> str:
    """0..999 as spoken English words ("three hundred and twelve")."""
    if n < 10:
        return DIGITS[n]
    if n < 20:
        return TEENS[n - 10]
    if n < 100:
        tens, ones = divmod(n, 10)
        return TENS[tens - 2] + ("" if ones == 0 else " " + DIGITS[ones])
    hundreds, rest = divmod(n, 100)
    return DIGITS[hundreds] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))


def digits_sentence(rng: random.Random) -> str:
    """A string of 1-7 digits spoken one by one: "four one nine"."""
    return " ".join(rng.choice(DIGITS) for _ in range(rng.randint(1, 7)))


def _time(rng: random.Random) -> str:
    hour = DIGITS[1:] + TEENS[:3]
    minute = rng.choice(["", " o'clock", " fifteen", " thirty", " forty five", " " + number_words(rng.randint(10, 59))])
    return rng.choice(hour) + minute + rng.choice(["", "", " a m", " p m", " in the morning", " in the evening"])


_CONTACTS = ["mom", "dad", "anna", "peter", "the office", "doctor lee", "grandma", "john", "maria", "the plumber"]
_DEVICES = ["lights", "heater", "fan", "radio", "television", "kitchen lights", "alarm", "music"]
_ROOMS = ["kitchen", "living room", "bedroom", "garage", "office", "bathroom"]
_UNITS = ["seconds", "minutes", "hours"]


def commands_sentence(rng: random.Random) -> str:
    """A voice-assistant request from a small grammar."""
    templates: list[Callable[[], str]] = [
        lambda: f"set a timer for {number_words(rng.randint(1, 90))} {rng.choice(_UNITS)}",
        lambda: f"call {rng.choice(_CONTACTS)} at {_time(rng)}",
        lambda: f"wake me up at {_time(rng)}",
        lambda: f"turn {rng.choice(['on', 'off'])} the {rng.choice(_DEVICES)}",
        lambda: f"turn {rng.choice(['on', 'off'])} the {rng.choice(_DEVICES)} in the {rng.choice(_ROOMS)}",
        lambda: f"set the temperature to {number_words(rng.randint(15, 30))} degrees",
        lambda: f"remind me to call {rng.choice(_CONTACTS)} in {number_words(rng.randint(2, 59))} minutes",
        lambda: "what time is it",
        lambda: f"what is {number_words(rng.randint(1, 999))} plus {number_words(rng.randint(1, 99))}",
        lambda: f"play track number {number_words(rng.randint(1, 40))}",
        lambda: f"dial {digits_sentence(rng)}",
    ]
    return rng.choice(templates)()


DOMAINS: dict[str, Callable[[random.Random], str]] = {"digits": digits_sentence, "commands": commands_sentence}
