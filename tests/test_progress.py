"""The tqdm progress bar the CLI draws from `progress(done, total, note)` callbacks."""

import io

from sddr_core.cli.progress import ProgressBar


def test_progress_bar_shows_counts_and_note_and_ends_its_line():
    stream = io.StringIO()
    bar = ProgressBar("eval", stream=stream)
    bar(2, 5, "aloe")
    bar(5, 5, "baby1")
    text = stream.getvalue()
    assert text.startswith("\reval") and "5/5" in text and "baby1" in text
    assert text.endswith("\n") and text.count("\n") == 1  # closed once done == total
    assert bar.bar.n == 5 and bar.bar.total == 5


def test_progress_bar_takes_the_total_from_the_calls_and_closes_early():
    stream = io.StringIO()
    bar = ProgressBar("[1/1] a.png", total=30, unit="pass", stream=stream)
    bar(1, 30)
    bar.close()  # a failure or a cancel stops the loop before 30
    assert "1/30" in stream.getvalue() and "pass" in stream.getvalue()
    assert stream.getvalue().endswith("\n")
