"""worker/logs.py: the receiver's line per request is written by info_line_writer, the same
line, redacted, whether it goes straight to configure_logging's stream or through logging."""

import io
import logging

import pytest

from worker.logs import configure_logging, info_line_writer
from worker.redact import remember_secret

LINE = '{"route": "stripe", "id": "whsec_this_is_not_for_logs", "known": "%s"}'


@pytest.fixture
def root_logging(capsys):
    """What reaches stderr (capsys's, which configure_logging's handler writes to); the
    root logger's own handlers put back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield lambda: capsys.readouterr().err
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_the_plain_handler_gets_the_redacted_line_written_straight(root_logging):
    remember_secret("a-known-secret-value")
    configure_logging()
    logger = logging.getLogger("stripe_worker.test_logs.plain")
    write = info_line_writer(logger)
    write(LINE % "a-known-secret-value")
    write("second")
    assert root_logging() == (
        '{"route": "stripe", "id": "whsec_[redacted]", "known": "[redacted]"}\nsecond\n'
    )


def test_a_format_with_more_than_the_message_goes_through_logging(root_logging):
    configure_logging("INFO", "%(levelname)s %(name)s: %(message)s")
    logger = logging.getLogger("stripe_worker.test_logs.formatted")
    info_line_writer(logger)(LINE % "x")
    assert root_logging() == (
        'INFO stripe_worker.test_logs.formatted: {"route": "stripe", '
        '"id": "whsec_[redacted]", "known": "x"}\n'
    )


def test_a_filter_or_a_handler_of_its_own_goes_through_logging(root_logging):
    configure_logging()
    filtered = logging.getLogger("stripe_worker.test_logs.filtered")
    filtered.addFilter(lambda record: "drop" not in record.getMessage())
    own = logging.getLogger("stripe_worker.test_logs.own")
    mine = io.StringIO()
    own.addHandler(logging.StreamHandler(mine))
    try:
        info_line_writer(filtered)("drop me")
        info_line_writer(filtered)("keep me")
        info_line_writer(own)("to both")
    finally:
        own.handlers.clear()
        filtered.filters.clear()
    assert root_logging() == "keep me\nto both\n"
    assert mine.getvalue() == "to both\n"


def test_info_off_writes_nothing(root_logging):
    configure_logging("WARNING")
    info_line_writer(logging.getLogger("stripe_worker.test_logs.quiet"))("not written")
    assert root_logging() == ""
