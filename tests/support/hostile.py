"""What a hostile sender with a valid secret can sign: bodies for hypothesis.

Strings with lone surrogates (a cut emoji), controls and bidi overrides; numbers beyond a
double or an int64, NaN and Infinity; nesting from 1 to 1,200 levels; all inside events
shaped like the real ones (a Stripe event, a Standard Webhooks signup), so they get past
the shape checks to the parts that once answered 500 or ended as `internal_error`.
Encoded either with JSON escapes (`"\\ud800"`, valid UTF-8) or raw (invalid UTF-8).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st


@dataclass(frozen=True)
class Raw:
    """JSON text put into a body as is: what json.dumps would never write."""

    text: str


_RAW_NUMBERS = ["1e999", "-1e999", "9" * 20, "-" + "9" * 20, "1" * 5000, "NaN", "Infinity"]

hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(
        alphabet=st.one_of(
            st.characters(codec="utf-8"),
            st.characters(categories=["Cs"]),  # lone surrogates
            st.sampled_from("\x00\x1b\r\n\t\x85\u202e\u2028\ufffd"),
        ),
        max_size=40,
    ),
    st.text(alphabet="ab", min_size=250, max_size=600),  # past Stripe's string limits
)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**80),
    st.integers(min_value=-(2**80), max_value=-(2**63) + 2),
    st.floats(),  # NaN and Infinity included: json.dumps writes them as literals
    st.sampled_from(_RAW_NUMBERS).map(Raw),
)
deep = st.integers(min_value=1, max_value=1200).map(lambda depth: Raw("[" * depth + "]" * depth))
json_values = st.recursive(
    st.none() | st.booleans() | numbers | hostile_text | deep,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=20,
)


def encode(value: Any, escaped: bool = True) -> bytes:
    """`value` as a body: Raw pieces in place; lone surrogates as JSON escapes (escaped)
    or as the bytes they would be (not UTF-8)."""
    raws: list[str] = []

    def placeholder(item: object) -> str:
        if not isinstance(item, Raw):
            raise TypeError(type(item).__name__)
        raws.append(item.text)
        return f"\x00raw{len(raws) - 1}\x00"

    text = json.dumps(value, ensure_ascii=escaped, default=placeholder)
    for i, raw in enumerate(raws):
        text = text.replace(json.dumps(f"\x00raw{i}\x00", ensure_ascii=escaped), raw)
    return text.encode("utf-8", "surrogatepass")


ids = st.one_of(hostile_text, st.from_regex(r"\Aevt_[A-Za-z0-9]{4,24}\Z"))
event_types = st.one_of(
    hostile_text, st.sampled_from(["customer.created", "customer.updated", "invoice.paid"])
)
stripe_events = st.fixed_dictionaries(
    {
        "id": ids,
        "object": st.just("event"),
        "type": event_types,
        "livemode": st.just(False),  # the tests' key is a test key
        "data": st.fixed_dictionaries({"object": json_values}),
    },
    optional={"extra": json_values, "created": numbers},
)
emails = st.one_of(st.emails(), hostile_text.map(lambda s: s + "@example.com"), hostile_text)
metadata = st.dictionaries(
    hostile_text, st.one_of(hostile_text, json_values), max_size=6
) | st.dictionaries(
    st.text(alphabet="abcdefghij", min_size=2, max_size=4), st.just("v"), min_size=49, max_size=51
)


def signup_events(user_ids: st.SearchStrategy[str] = hostile_text) -> st.SearchStrategy:
    """A Standard Webhooks signup whose every field is hostile."""
    return st.fixed_dictionaries(
        {
            "type": st.just("user.created"),
            "data": st.fixed_dictionaries(
                {"user_id": user_ids, "email": emails},
                optional={"name": hostile_text | st.none(), "metadata": metadata | json_values},
            ),
        }
    )


bodies = st.one_of(stripe_events, signup_events(), json_values)
