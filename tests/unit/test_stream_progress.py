"""``stream.progress.Progress``: the checkpoint count remus-receiver logs
for the xl relay, from the framing alone, however the bytes are split."""
import random

import pytest

from xen_remus_compat.stream import progress, simstream, writer


def body(s):
    return s.data[len(writer.xl_header(s.config)):]


@pytest.mark.parametrize("guest", ["pv", "hvm"])
def test_counts_checkpoints_at_any_split(guest):
    s = simstream.build_stream(100, [{1, 2}, {3}, {5, 6, 7}], guest=guest,
                               batch=16)
    data = body(s)
    rng = random.Random(7)
    for _ in range(30):
        seen = []
        p = progress.Progress(on_checkpoint=seen.append)
        i = 0
        while i < len(data):
            n = rng.choice([1, 3, 8, 100, 4096, 70000])
            p.feed(data[i:i + n])
            i += n
        assert p.checkpoints == 4 and seen == [1, 2, 3, 4]
        assert not p.ended and p.bytes == len(data)


def test_checkpoint_completes_exactly_at_checkpoint_end():
    s = simstream.build_stream(10, [{1}])
    hdr = len(writer.xl_header(s.config))
    for k, end in enumerate(s.checkpoint_ends, 1):
        p = progress.Progress()
        p.feed(s.data[hdr:end - 1])
        assert p.checkpoints == k - 1
        p.feed(s.data[end - 1:end])
        assert p.checkpoints == k


def test_plain_stream_ends():
    s = simstream.build_stream(10, plain=True)
    p = progress.Progress()
    p.feed(body(s) + b"trailing bytes are ignored")
    assert p.ended and p.checkpoints == 0
