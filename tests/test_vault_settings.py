import pytest

from worker.errors import ModeMismatch, SecretMissing, SettingsError, SpecError
from worker.redact import redact
from worker.settings import Settings
from worker.vault import Vault, check_livemode, key_mode

from .support import LIVE_KEY, TEST_KEY


def test_settings_defaults_match_the_interface():
    s = Settings.from_env({})
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.stripe_api_base == "https://api.stripe.com"
    assert s.stream_prefix == "stripe"
    assert s.stream_maxlen == 100_000
    assert s.secrets_dir is None
    assert s.keys.stream("customers") == "stripe:customers"


def test_settings_from_environment(tmp_path):
    s = Settings.from_env(
        {
            "REDIS_URL": "redis://r:1/2",
            "STREAM_PREFIX": "acme",
            "STREAM_MAXLEN": "50",
            "SECRETS_DIR": str(tmp_path),
            "WEBHOOK_TOLERANCE": "60",
            "STRIPE_TIMEOUT": "2.5",
        }
    )
    assert (s.redis_url, s.stream_prefix, s.stream_maxlen) == ("redis://r:1/2", "acme", 50)
    assert s.secrets_dir == tmp_path
    assert (s.webhook_tolerance, s.stripe_timeout) == (60, 2.5)
    assert s.keys.stream("errors") == "acme:errors"


@pytest.mark.parametrize("value", ["abc", "-1", "1.5"])
def test_bad_number_setting_is_a_clear_error(value):
    with pytest.raises(SettingsError, match="STREAM_MAXLEN"):
        Settings.from_env({"STREAM_MAXLEN": value})


def test_secret_file_wins_over_environment(tmp_path):
    (tmp_path / "stripe_secret_key").write_text(TEST_KEY + "\n")
    vault = Vault(tmp_path, {"STRIPE_SECRET_KEY": LIVE_KEY})
    assert vault.get("stripe_secret_key") == TEST_KEY


def test_secret_falls_back_to_upper_case_environment(tmp_path):
    vault = Vault(tmp_path, {"STRIPE_SECRET_KEY": LIVE_KEY})
    assert vault.get("stripe_secret_key") == LIVE_KEY


def test_missing_secret_names_it_and_shows_no_value(tmp_path):
    vault = Vault(tmp_path, {"OTHER": "sk_test_notthisone123"})
    with pytest.raises(SecretMissing) as info:
        vault.get("stripe_secret_key")
    assert "stripe_secret_key" in info.value.message
    assert "STRIPE_SECRET_KEY" in info.value.message
    assert "notthisone" not in info.value.message


@pytest.mark.parametrize("name", ["../etc/passwd", "Stripe", "a/b", "", "x" * 80, "a b"])
def test_secret_names_cannot_escape_the_folder(tmp_path, name):
    with pytest.raises(SpecError):
        Vault(tmp_path, {}).find(name)


def test_rotation_list():
    vault = Vault(None, {"STRIPE_WEBHOOK_SECRET": "whsec_old111111, whsec_new222222"})
    assert vault.get_list("stripe_webhook_secret") == ["whsec_old111111", "whsec_new222222"]


@pytest.mark.parametrize(
    ("key", "mode"),
    [("sk_test_x", "test"), ("rk_test_x", "test"), ("sk_live_x", "live"), ("rk_live_x", "live")],
)
def test_key_mode_from_prefix(key, mode):
    assert key_mode(key) == mode


def test_unknown_key_shape_is_refused_without_echoing_it():
    with pytest.raises(SpecError) as info:
        key_mode("pk_test_publishable123")
    assert "publishable123" not in str(info.value)


def test_livemode_must_agree_with_key():
    check_livemode(TEST_KEY, False)
    check_livemode(LIVE_KEY, True)
    with pytest.raises(ModeMismatch):
        check_livemode(TEST_KEY, True)
    with pytest.raises(ModeMismatch):
        check_livemode(LIVE_KEY, "true")  # only a JSON boolean counts


def test_redact_masks_known_values_and_secret_shapes():
    vault = Vault(None, {"SIGNUP_WEBHOOK_SECRET": "plain-secret-value-42"})
    vault.get("signup_webhook_secret")
    text = (
        "key sk_live_abcDEF123 hook whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw "
        "restricted rk_test_zzz999 other plain-secret-value-42"
    )
    out = redact(text)
    for secret in (
        "abcDEF123",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "zzz999",
        "plain-secret-value-42",
    ):
        assert secret not in out
    assert "sk_live_[redacted]" in out


def test_error_messages_go_through_redaction():
    err = SecretMissing("oops sk_test_leakedvalue99")
    assert "leakedvalue99" not in str(err)
    assert "leakedvalue99" not in repr(err.to_dict())
