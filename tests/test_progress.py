"""Progress lines: a redrawn bar on a terminal, plain lines with no control characters elsewhere."""

import io
import re

from keras_llm.progress import CountedDataset, format_duration, Progress

CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]|\x1b\[")  # Anything but "\n" and text.


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _run(terminal, seconds_per_unit, total=10, **options):
    stream, clock = io.StringIO(), _Clock()
    with Progress("validation", total, stream=stream, enabled=True, terminal=terminal,
                  clock=clock, **options) as progress:
        for _ in range(total):
            clock.now += seconds_per_unit
            progress.update()
    return stream.getvalue()


def test_off_a_terminal_plain_periodic_lines_with_eta_and_no_control_characters():
    text = _run(terminal=False, seconds_per_unit=10.0, line_seconds=30.0, summary_seconds=10.0)
    assert not CONTROL.search(text)
    lines = text.splitlines()
    # Every 30 s of 100 s: at 30, 60, 90 s; then the summary.
    assert lines == ["validation: 3/10 batches (30%), 30s elapsed, ETA 1m10s",
                     "validation: 6/10 batches (60%), 1m00s elapsed, ETA 40s",
                     "validation: 9/10 batches (90%), 1m30s elapsed, ETA 10s",
                     "validation: 10 batches in 1m40s"]


def test_on_a_terminal_one_redrawn_bar_cleared_at_the_end():
    text = _run(terminal=True, seconds_per_unit=1.0, redraw_seconds=0.2, summary_seconds=60.0)
    assert "\n" not in text
    # The first unit (often tracing) gives no ETA; the rate is measured from it on.
    assert text.startswith("\rvalidation [##..................] 1/10 batches 10% | 1.0 batches/s"
                           "\x1b[K\rvalidation [####................] 2/10 batches 20% | "
                           "1.0 batches/s | ETA 8s")
    assert text.endswith("\r\x1b[K")


def test_a_short_phase_leaves_nothing_and_a_worker_prints_nothing():
    assert _run(terminal=False, seconds_per_unit=0.01) == ""
    stream = io.StringIO()
    with Progress("test", 3, stream=stream, enabled=False, line_seconds=0.0,
                  summary_seconds=0.0) as progress:
        progress.update(3)
    assert stream.getvalue() == ""


def test_the_eta_leaves_out_the_first_units_time():
    stream, clock = io.StringIO(), _Clock()
    with Progress("validation", 100, stream=stream, enabled=True, terminal=False, clock=clock,
                  line_seconds=30.0, summary_seconds=1e9) as progress:
        clock.now = 20.0  # Tracing and the first batch.
        progress.update()
        for _ in range(20):  # Then 0.5 s per batch.
            clock.now += 0.5
            progress.update()
    assert stream.getvalue() == "validation: 21/100 batches (21%), 30s elapsed, ETA 40s\n"


def test_unknown_total_counts_without_eta():
    stream, clock = io.StringIO(), _Clock()
    with Progress("tokenizing", None, unit="texts", stream=stream, enabled=True, terminal=False,
                  clock=clock, line_seconds=30.0, summary_seconds=1e9) as progress:
        clock.now = 31.0
        progress.update(500)
    assert stream.getvalue() == "tokenizing: 500 texts, 31s elapsed\n"


def test_counted_dataset_counts_each_batch_and_keeps_the_element_spec():
    class Batches:
        element_spec = "spec"

        def __iter__(self):
            return iter([1, 2, 3])

    progress = Progress("x", 3, stream=io.StringIO(), enabled=True)
    counted = CountedDataset(Batches(), progress)
    assert counted.element_spec == "spec" and list(counted) == [1, 2, 3]
    assert progress.count == 3


def test_format_duration():
    assert [format_duration(s) for s in (5, 65, 3725)] == ["5s", "1m05s", "1h02m"]
