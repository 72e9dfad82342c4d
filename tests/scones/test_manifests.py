"""manifests: the `.lst` format (index<TAB>label<TAB>filename)."""

from __future__ import annotations

from pathlib import Path

import pytest

from include.scones.manifests import LstRow, format_lst, parse_lst, read_lst


def test_format_and_parse_round_trip() -> None:
    rows = [LstRow(3, 1, "b.png"), LstRow(1, 0, "a.png")]
    text = format_lst(rows)
    assert text == "3\t1\tb.png\n1\t0\ta.png\n"
    assert parse_lst(text) == rows


def test_parse_accepts_float_labels_and_skips_blank_lines() -> None:
    assert parse_lst("7\t1.0\tx.png\n\n  \n8\t0\ty.png") == [LstRow(7, 1, "x.png"), LstRow(8, 0, "y.png")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1\t0\n", "train.lst:1: expected 'index<TAB>label<TAB>filename', got '1\\t0'"),
        ("1\t0\ta.png\nx\t0\tb.png\n", "train.lst:2: index and label must be numbers, got 'x\\t0\\tb.png'"),
        ("1 0 a.png\n", "train.lst:1: expected 'index<TAB>label<TAB>filename'"),
    ],
)
def test_parse_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_lst(text, "train.lst")
    assert message in str(raised.value)


def test_read_lst_names_the_file_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "test.lst"
    path.write_text("1\t0\ta.png\nbroken\n")
    with pytest.raises(ValueError, match=rf"{path}:2: expected"):
        read_lst(path)
