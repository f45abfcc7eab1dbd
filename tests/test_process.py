"""certbot_wwu.process: the one runner for systemctl, certbot, ssh and rsync,
with real commands."""
import os
import signal
import sys
import time

import pytest

from certbot_wwu import process
from certbot_wwu.errors import WwuError

PY = sys.executable


class Oops(WwuError):
    pass


def alive(pid):
    try:
        with open("/proc/{}/stat".format(pid)) as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_status_and_merged_output():
    assert process.run([PY, "-c", "import sys; print('out'); sys.stderr.write('err'); "
                        "sys.exit(3)"], Oops, "fix it") == (3, "out\nerr")


def test_separate_output_input_env_and_utf8():
    done = process.execute(
        [PY, "-c", "import os, sys; data = sys.stdin.buffer.read(); "
         "sys.stdout.buffer.write(data.upper() + os.environ['X'].encode()); "
         "sys.stderr.buffer.write(b'\\xc3\\xa4')"],
        Oops, "fix it", input=b"abc", env={"X": "!", "PATH": os.environ["PATH"]})
    assert (done.code, done.out, done.err, done.timed_out) == (0, "ABC!", "ä", False)


def test_a_passed_descriptor_is_open_in_the_command():
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"secret")
        os.close(write_end)
        done = process.execute([PY, "-c", "import os; print(os.read({}, 10).decode())"
                                .format(read_end)], Oops, "fix it", pass_fds=(read_end,))
    finally:
        os.close(read_end)
    assert done.out.strip() == "secret"


def test_a_command_that_cannot_start_is_one_sentence():
    with pytest.raises(Oops) as err:
        process.run(["/nonexistent/tool", "x"], Oops, "install the tool")
    # Python 3.6 repeats the file name in strerror
    assert str(err.value).startswith("Cannot run /nonexistent/tool: No such file or "
                                     "directory")
    assert str(err.value).endswith("; install the tool.")


def test_a_timeout_kills_and_raises_or_returns():
    started = time.monotonic()
    with pytest.raises(Oops) as err:
        process.run(["sleep", "30"], Oops, "look at it", timeout=0.5)
    assert str(err.value) == "'sleep 30' did not finish within 0.5 seconds; look at it."
    done = process.execute(["sleep", "30"], Oops, "look at it", timeout=0.5,
                           timeout_raises=False)
    assert (done.code, done.timed_out) == (-1, True)
    assert time.monotonic() - started < 10


def test_background_errors_do_not_wait_for_what_it_leaves_behind():
    """``ssh -f``: the command exits, a process it started keeps its
    descriptors; the runner returns at once with the errors."""
    started = time.monotonic()
    done = process.execute(["sh", "-c", "sleep 20 & echo 'went wrong' >&2; exit 4"],
                           Oops, "fix it", timeout=15, background=True)
    assert (done.code, done.out, done.err) == (4, "", "went wrong\n")
    assert time.monotonic() - started < 10


def test_an_interrupted_caller_stops_the_command(monkeypatch):
    """SIGTERM turned into KeyboardInterrupt (as register does): the command
    is terminated, not left running."""
    previous = signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(
        KeyboardInterrupt()))
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    seen = []
    original = process.subprocess.Popen

    class Recording(original):  # only to learn the pid
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(self.pid)
    monkeypatch.setattr(process.subprocess, "Popen", Recording)
    try:
        with pytest.raises(KeyboardInterrupt):
            process.execute(["sleep", "30"], Oops, "fix it", timeout=20)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert seen and not alive(seen[0])
