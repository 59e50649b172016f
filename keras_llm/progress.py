"""Progress with an ETA for the long phases of a run: a bar on a terminal, plain lines elsewhere.

    with Progress("validation", total=400) as progress:   # 400 batches
        for batch in progress.wrap(batches):
            ...

On a terminal (the stream's `isatty()`), one line is redrawn with `\\r` at most every
`redraw_seconds`: `validation [#######.............] 140/400 batches 35% | 12.3 batches/s |
ETA 21s`. Anywhere else (CI logs, `experiments.launch_local`'s prefixed worker logs, a file)
a plain line without control characters is printed every `line_seconds`: `validation: 140/400
batches (35%), 11s elapsed, ETA 21s`. A phase that took `summary_seconds` or more ends with one
line `validation: 400 batches in 33s`; a shorter one leaves nothing behind, so the short
evaluations of a small run do not fill its log.

Only the cluster's chief reports (`keras_llm.training.cluster.is_chief_task`), so a two-worker
run prints each phase once. Progress goes to stderr: stdout keeps the results and the per-step
lines a script may parse.

Why our own: `keras.utils.Progbar` decides on a dynamic display from `sys.stdout` alone, writes
backspaces before its `\\r`, and off a terminal prints its bar as a new line every `interval`
(0.05 s by default); tqdm is a new dependency for ~100 lines of behaviour we can test here.
"""

import os
import sys
import time


def format_duration(seconds):
    """Formats seconds as e.g. '1h02m', '3m05s' or '12s'."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def _is_chief():
    # Imported here: keras_llm.data uses this module and must not import the training package.
    from keras_llm.training.cluster import is_chief_task

    try:
        return is_chief_task()
    except ValueError:  # A malformed TF_CONFIG is reported where the strategy is made.
        return True


class Progress:
    """Counts one phase's work and reports it with an ETA.

    Args:
        description: str, the phase, e.g. "validation", "tokenizing", "test".
        total: int, the units the phase will do, or None if unknown (no percentage or ETA).
        unit: str, what is counted ("batches", "texts", "characters").
        stream: where to write (default: sys.stderr at each write).
        enabled: bool; default: this process is the cluster's chief.
        terminal: bool, draw a bar with `\\r`; default: `stream.isatty()`.
        line_seconds: off a terminal, the interval of the plain lines.
        redraw_seconds: on a terminal, the interval of the redraws.
        summary_seconds: a phase this long or longer ends with a summary line.
        clock: `() -> seconds`, for tests.
    """

    def __init__(self, description, total=None, *, unit="batches", stream=None, enabled=None,
                 terminal=None, line_seconds=30.0, redraw_seconds=0.2, summary_seconds=10.0,
                 clock=time.monotonic):
        self.description, self.total, self.unit = description, total, unit
        self.count = 0
        self._stream = stream
        self._enabled = _is_chief() if enabled is None else enabled
        stream = self.stream
        self._terminal = (terminal if terminal is not None else
                          bool(getattr(stream, "isatty", lambda: False)()))
        if os.environ.get("TERM") == "dumb":
            self._terminal = False
        self._interval = redraw_seconds if self._terminal else line_seconds
        self._summary_seconds = summary_seconds
        self._clock = clock
        self._start = clock()
        self._last_write = self._start
        self._drawn = False
        self._closed = False
        self._first = None  # (time, count) at the first update; the ETA's rate starts there.

    @property
    def stream(self):
        return self._stream if self._stream is not None else sys.stderr

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False

    def wrap(self, iterable):
        """Yields `iterable`'s items, counting one unit after each."""
        for item in iterable:
            yield item
            self.update()

    def update(self, count=1):
        """Adds `count` units; reports when the interval has passed."""
        self.count += count
        if not self._enabled:
            return
        now = self._clock()
        if self._first is None:  # The first unit often includes tracing: the rate starts after.
            self._first = (now, self.count)
        if now - self._last_write >= self._interval:
            self._last_write = now
            if self._terminal:
                self._write("\r" + self._bar(now - self._start) + "\x1b[K")
                self._drawn = True
            else:
                self._write(self._line(now - self._start) + "\n")

    def close(self):
        """Clears the bar; a long phase leaves a one-line summary."""
        if self._closed or not self._enabled:
            self._closed = True
            return
        self._closed = True
        elapsed = self._clock() - self._start
        text = ""
        if self._drawn:
            text += "\r\x1b[K"
        if elapsed >= self._summary_seconds:
            text += f"{self.description}: {self.count:,} {self.unit} in {format_duration(elapsed)}\n"
        if text:
            self._write(text)

    def _eta(self, elapsed):
        """The remaining time at the rate since the first update (None until there is one)."""
        if not self.total or self._first is None or self.count >= self.total:
            return None
        first_time, first_count = self._first
        if self.count <= first_count:
            return None
        seconds_per_unit = (self._start + elapsed - first_time) / (self.count - first_count)
        return format_duration(seconds_per_unit * (self.total - self.count))

    def _line(self, elapsed):
        done = f"{self.count:,}"
        if self.total:
            done += f"/{self.total:,} {self.unit} ({100 * self.count / self.total:.0f}%)"
        else:
            done += f" {self.unit}"
        eta = self._eta(elapsed)
        return (f"{self.description}: {done}, {format_duration(elapsed)} elapsed"
                + (f", ETA {eta}" if eta else ""))

    def _bar(self, elapsed, width=20):
        rate = self.count / elapsed if elapsed > 0 else 0.0
        if self.total:
            filled = min(width, int(width * self.count / self.total))
            head = (f"{self.description} [{'#' * filled}{'.' * (width - filled)}] "
                    f"{self.count:,}/{self.total:,} {self.unit} "
                    f"{100 * self.count / self.total:.0f}%")
        else:
            head = f"{self.description} {self.count:,} {self.unit}"
        eta = self._eta(elapsed)
        return head + f" | {rate:,.1f} {self.unit}/s" + (f" | ETA {eta}" if eta else "")

    def _write(self, text):
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # A closed pipe must not stop training.
            pass


def dataset_batches(dataset):
    """The number of elements of a finite `tf.data.Dataset`: its cardinality, or counted once.

    A pipeline whose size tf.data cannot infer (a filter, a text-line reader) is iterated once
    to count it, which costs one pass over the input but not over the model.
    """
    import tensorflow as tf

    size = int(dataset.cardinality())
    if size >= 0:
        return size
    if size == int(tf.data.INFINITE_CARDINALITY):
        return None
    return int(dataset.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1))


class CountedDataset:
    """A distributed dataset that reports each batch it yields to a `Progress`.

    Behaves as the wrapped dataset where `Trainer.evaluate` looks (`element_spec`, iteration),
    so evaluation needs no progress argument of its own.
    """

    def __init__(self, distributed_dataset, progress):
        self._dataset = distributed_dataset
        self._progress = progress

    @property
    def element_spec(self):
        return self._dataset.element_spec

    def __iter__(self):
        return self._progress.wrap(iter(self._dataset))


def evaluate_with_progress(trainer, distributed_dataset, description, total):
    """`trainer.evaluate(distributed_dataset)`, reporting each batch to a `Progress`.

    Args:
        trainer: a `keras_llm.training.trainer.Trainer`.
        distributed_dataset: what `trainer.evaluate` takes.
        description: str, e.g. "validation" or "test".
        total: int, the number of batches (`dataset_batches` of the undistributed dataset), or
            None if unknown.
    """
    with Progress(description, total) as progress:
        return trainer.evaluate(CountedDataset(distributed_dataset, progress))
