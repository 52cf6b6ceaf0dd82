"""A first end-to-end check over real sockets in each connection mode."""

import pytest

from tests.conftest import PASSWORD


@pytest.mark.parametrize("mode", ["plain", "stls", "implicit"])
def test_login_stat_retr_quit(mode, connect, deliver):
    """A delivered message comes back byte for byte in every connection mode."""
    deliver("alice", b"Subject: hi\r\n\r\n.dot\r\nbody\r\n")
    pop = connect(mode)
    pop.login("alice", PASSWORD)
    assert pop.stat() == (1, 27)
    assert pop.retr(1) == b"Subject: hi\r\n\r\n.dot\r\nbody\r\n"
    assert pop.quit().ok
