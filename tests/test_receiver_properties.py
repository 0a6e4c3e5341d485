"""Property-based: whatever headers and bodies arrive, never a 5xx, never an unsigned task."""

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from .support import queued, sign_standard, sign_stripe
from .support.signing import HEADER_NAMES, signature_like_values

header_values = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=200),
    *signature_like_values(),
)
bodies = st.one_of(
    st.binary(max_size=2000),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
        max_leaves=30,
    ).map(lambda v: repr(v).encode()),
)


@pytest.mark.slow
@hsettings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    route=st.sampled_from(["stripe", "signup"]),
    headers=st.dictionaries(st.sampled_from(HEADER_NAMES), header_values, max_size=5),
    body=bodies,
)
def test_arbitrary_requests_never_5xx_never_queue(
    client, redis_client, settings, route, headers, body
):
    r = client.post(f"/webhooks/{route}", data=body, headers=headers)
    assert r.status_code < 500, r.get_data(as_text=True)
    assert r.status_code == 400
    assert set(r.json["error"]) == {"type", "message"}
    assert queued(redis_client, settings) == []


@pytest.mark.slow
@hsettings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies)
def test_validly_signed_garbage_is_4xx_or_queued_never_5xx(client, body):
    for route, headers in (
        ("stripe", {"Stripe-Signature": sign_stripe(body)}),
        ("signup", sign_standard(body, "msg_prop")),
    ):
        r = client.post(f"/webhooks/{route}", data=body, headers=headers)
        assert r.status_code in (200, 400), (route, r.get_data(as_text=True))
