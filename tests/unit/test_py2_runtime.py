"""xen_remus_compat.py2.runtime: what translated scripts call as ``_py2``.

Expected values are Python 2's behaviour (legacy-api.md header: "Strings
are byte strings, ``/`` is integer division on ints"); the scripts that
reach these helpers through the translation are in test_pyrun.py.
"""
from __future__ import annotations

import socket
import struct

import pytest

from xen_remus_compat.py2 import runtime as pyrun
from xen_remus_compat.py2.runtime import Py2Bytes


def test_div_helper():
    assert pyrun.div(7, 2) == 3 and pyrun.div(-7, 2) == -4
    assert pyrun.div(7, 2.0) == 3.5 and pyrun.div(True, 2) == 0
    with pytest.raises(ZeroDivisionError):
        pyrun.div(1, 0)


def test_socket_accept_keeps_the_tolerant_class(tmp_path):
    srv = pyrun.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    cli = pyrun.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    try:
        assert isinstance(conn, pyrun.socket)
        cli.sendall("(ready receive)\n")
        assert conn.recv(64) == "(ready receive)\n"
    finally:
        for s in (srv, cli, conn):
            s.close()


def test_py2bytes_behaves_like_a_py2_str():
    b = Py2Bytes(b"done\n")
    assert b.strip() == "done" and isinstance(b.strip(), Py2Bytes)
    assert hash(Py2Bytes(b"done")) == hash("done")
    assert {"done": 1}[Py2Bytes(b"done")] == 1
    assert "x" + Py2Bytes(b"y") == "xy" and Py2Bytes(b"y") + "x" == "yx"
    assert "%s|%5s" % (Py2Bytes(b"ab"), Py2Bytes(b"c")) == "ab|    c"
    assert [c for c in Py2Bytes(b"ab")] == ["a", "b"]
    assert Py2Bytes(b"a,b").split(",") == ["a", "b"]
    assert struct.unpack("!I", Py2Bytes(b"\0\0\1\0")) == (256,)
    assert Py2Bytes(b"done") != "fail"
    assert str(Py2Bytes(b"\xe9")) == "\xe9"


def test_to_bytes_is_latin1_for_py2_byte_strings():
    assert pyrun.to_bytes("\xff\x00flush") == b"\xff\x00flush"
    assert pyrun.to_bytes("\u20ac") == "\u20ac".encode("utf-8")
    assert pyrun.to_bytes(b"x") == b"x"
