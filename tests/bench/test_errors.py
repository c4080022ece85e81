"""bench.errors helpers: the one-line form of an exception."""

from bench.errors import BenchError, first_line


def test_first_line_is_the_type_and_the_first_line_of_the_message():
    assert first_line(ValueError("bad value\nmore detail\n")) == "ValueError: bad value"
    assert first_line(BenchError("  \nthe culprit; the fix")) == "BenchError: the culprit; the fix"


def test_first_line_of_an_empty_message_keeps_the_type():
    assert first_line(KeyError()) == "KeyError: "
    assert first_line(RuntimeError("")) == "RuntimeError: "


def test_first_line_is_cut_to_the_limit():
    exc = OSError("x" * 1000)
    assert len(first_line(exc)) == 300
    assert first_line(exc, limit=200) == ("OSError: " + "x" * 1000)[:200]
