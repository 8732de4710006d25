import pytest

from earthkeep.catalog.cursor import decode_cursor, encode_cursor
from earthkeep.errors import InvalidInput


def test_round_trip():
    assert decode_cursor(encode_cursor({"pk": 42})) == {"pk": 42}
    assert decode_cursor(None) is None


@pytest.mark.parametrize("bad", ["!!!", "bm90IGpzb24", "WzFd"])
def test_foreign_cursor_is_invalid_input(bad):
    with pytest.raises(InvalidInput):
        decode_cursor(bad)
