"""bench.c_sub's counting of mosquitto_sub's output, cut into chunks anywhere."""
from bench.bare_sub import Counter
from bench.c_sub import Tally


def test_lines_are_counted_once_whatever_the_chunks_and_the_probe_makes_it_ready(tmp_path):
    out = b"bench-probe/1-9 " + b"p" * 50 + b"\n" + b"".join(
        b'bench/dev-1 {"seq":%d}\n' % i for i in range(40))
    for cut in range(1, len(out)):
        counter = Counter(str(tmp_path), "1")
        tally = Tally(counter, b"\nbench/dev-1 ", b"bench-probe/1-9 ")
        for start in range(0, len(out), cut):
            tally.feed(out[start:start + cut], float(start))
        assert counter.ready and counter.count == 40, cut
        assert counter.first <= counter.last


def test_nothing_counts_before_the_probe_and_other_topics_never(tmp_path):
    counter = Counter(str(tmp_path), "1")
    tally = Tally(counter, b"\nbench/dev-1 ", b"bench-probe/1-9 ")
    tally.feed(b"\nbench/dev-2 {}\nbench/dev-10 {}\n", 1.0)
    assert not counter.ready and counter.count == 0
