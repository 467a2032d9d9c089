"""Hostile streams into ``receive``, ``stream verify`` and ``stream dump``:
bad input is exit status 1 with one line, never 2 ("our bug"), and what a
stream names is printed escaped (issue 12, items 12 and 2).

Runs the whole command (``cli.main.main``) with UTF-8 text streams that
refuse what cannot be encoded, as a terminal or a pipe would.
"""
import io
import json

import pytest

from xen_remus_compat.cli import main as cli
from xen_remus_compat.stream import receiver, records, simstream, writer, xl
from xen_remus_compat.stream.reader import StreamWalker
from xen_remus_compat.stream.source import ByteSource


def with_config(tmp_path, config_text: str, name: str = "s.xl"):
    """A 2-checkpoint stream whose xl header carries ``config_text``."""
    s = simstream.build_stream(8, [{1}])
    rest = s.data[len(writer.xl_header(s.config)):]
    path = tmp_path / name
    path.write_bytes(xl.pack_header(config_text) + rest)
    return path


def run(argv):
    out_b, err_b = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(out_b, encoding="utf-8", newline="\n")
    err = io.TextIOWrapper(err_b, encoding="utf-8", newline="\n")
    rc = cli.main(argv, stdout=out, stderr=err)
    out.flush()
    err.flush()
    return rc, out_b.getvalue().decode(), err_b.getvalue().decode()


COMMANDS = [["receive", "-i"], ["stream", "verify"], ["stream", "dump"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c))
@pytest.mark.parametrize("nest", ["[" * 100000 + "]" * 100000,
                                  '{"a": ' * 50000 + "1" + "}" * 50000],
                         ids=["arrays", "objects"])
def test_deeply_nested_config_is_bad_input(tmp_path, cmd, nest):
    path = with_config(tmp_path, nest)
    rc, out, err = run(cmd + [str(path)])
    assert rc == 1, err
    assert "nested too deeply" in out + err
    assert "internal error" not in err and "RecursionError" not in err


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c))
def test_lone_surrogate_in_the_name_is_printed_escaped(tmp_path, cmd):
    path = with_config(tmp_path, '{"c_info": {"name": "gu\\ud800est"}}')
    rc, out, err = run(cmd + [str(path)])
    assert rc == 0, err
    assert "gu\\ud800est" in out + err
    assert "internal error" not in err


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c))
def test_a_name_cannot_forge_output_lines(tmp_path, cmd):
    path = with_config(tmp_path, json.dumps(
        {"c_info": {"name": "evil\nFORGED: OK\x1b[2J"}}))
    rc, out, err = run(cmd + [str(path)])
    assert rc == 0, err
    text = out + err
    assert "\x1b" not in text
    assert not any(line.startswith("FORGED") for line in text.splitlines())
    assert "evil\\nFORGED: OK\\x1b[2J" in text


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c))
def test_a_huge_json_integer_is_bad_input(tmp_path, cmd):
    path = with_config(tmp_path, '{"c_info": {"name": "a"}, "n": '
                       + "7" * 5000 + "}")
    rc, out, err = run(cmd + [str(path)])
    assert rc == 1, err
    assert "4300 digits" in out + err and "internal error" not in err


def test_shown_escapes_only_what_is_not_printable():
    assert xl.shown("gäst-01") == "gäst-01"
    assert xl.shown("a\nb\x1b\ud800") == "a\\nb\\x1b\\ud800"


# --- bounded memory per stream (remus-receiver, item 2) ------------------------

def test_a_record_beyond_the_reader_limit_is_refused_before_it_is_read():
    s = simstream.build_stream(4, [{1}])
    cut = [o for o, n in s.boundaries if n == "X86_PV_INFO"][0]
    # an optional libxc record that claims 64 MiB, and only 16 bytes of it
    data = s.data[:cut] + records.pack_record_header(0x80000099, 64 << 20) \
        + bytes(16)
    walker = StreamWalker(ByteSource(io.BytesIO(data)), fmt="xl",
                          max_record=8 << 20)
    with pytest.raises(xl.StreamError, match="exceeds this reader's limit"):
        for _ in walker.events():
            pass


def test_guest_memory_beyond_the_limit_ends_the_stream_at_the_last_checkpoint():
    # checkpoint 1 holds 128 pages; epoch 2 resends 64 of them, so 192 pages
    # are held until it completes (the old and the new copy)
    s = simstream.build_stream(128, [set(range(64)), {1}], batch=64)
    res = receiver.receive(s.data, sim=True, max_memory=192 * 4096)
    assert res.failover_ok and res.checkpoints == 3
    res = receiver.receive(s.data, sim=True, max_memory=160 * 4096)
    assert res.failover_ok and res.checkpoints == 1 and res.ended == "error"
    assert "exceeds this receiver's limit of 640 KiB" in res.error
    assert res.page_versions() == {p: 0 for p in range(128)}
    with pytest.raises(receiver.ReceiveFailed, match="limit of 400 KiB"):
        receiver.receive(s.data, sim=True, max_memory=100 * 4096)
