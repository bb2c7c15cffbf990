"""Progress bars: live on a terminal, plain lines in a log."""

import io

from asrforge.progress import progress_bar


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_gets_whole_lines_at_most_every_interval_not_redraws():
    log = io.StringIO()
    bar = progress_bar(total=5000, desc="decoding", unit="utt", stream=log)
    for _ in range(5000):
        bar.update()
    bar.set_postfix(wer="3.1%", refresh=False)
    bar.close()
    text = log.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and "\x1b" not in text and text.endswith("\n")
    assert 1 <= len(lines) <= 3 and lines[-1].startswith("decoding: 100%") and "5000/5000" in lines[-1]
    assert all(ch.isascii() for ch in text)


def test_a_terminal_gets_the_live_bar():
    term = Terminal()
    with progress_bar(range(3), desc="x", stream=term, mininterval=0) as bar:
        for _ in bar:
            pass
    assert term.getvalue().count("\r") >= 3


def test_disabled_bars_write_nothing():
    log = io.StringIO()
    for _ in progress_bar(range(10), stream=log, disable=True):
        pass
    assert log.getvalue() == ""
