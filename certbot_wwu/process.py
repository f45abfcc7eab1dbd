"""Running a command: always an argv list, never a shell, always bounded.

One runner for every command the package starts (systemctl, certbot, ssh,
rsync): ``execute`` with what a caller needs (standard input, environment,
inherited descriptors, separate or merged output), ``run`` for the common
case of a status and one text. A command that cannot start raises the
caller's error class with one sentence ending in the caller's remedy; one
that does not finish in time is killed, and so is one whose caller is
interrupted (KeyboardInterrupt, or a signal turned into one), so no command
outlives the reason it was started.
"""
import logging
import shlex
import subprocess
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple, Type

from certbot_wwu.errors import WwuError

logger = logging.getLogger(__name__)

COMMAND_TIMEOUT = 120
#: how long an interrupted command may take to end after SIGTERM
TERMINATE_GRACE = 10
#: the most of the error output of a background command that is kept
BACKGROUND_ERRORS = 65536


class Completed(object):
    """A finished (or killed) command: its exit status (-1 when it timed
    out), standard output and standard error as text."""

    def __init__(self, argv: Sequence[str], code: int, out: str, err: str,
                 timed_out: bool = False) -> None:
        self.argv, self.code, self.out, self.err = list(argv), code, out, err
        self.timed_out = timed_out


def _text(data: Optional[bytes]) -> str:
    # bytes, not universal_newlines: Python 3.6 in the C locale cannot decode
    # what certbot, ssh or a peer print in UTF-8
    return (data or b"").decode("utf-8", "replace")


def _stop(proc: "subprocess.Popen[bytes]") -> None:
    """End a command whose caller was interrupted: SIGTERM, then SIGKILL."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=TERMINATE_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def execute(argv: List[str], error: Type[WwuError], remedy: str,
            timeout: float = COMMAND_TIMEOUT, input: Optional[bytes] = None,
            env: Optional[Dict[str, str]] = None, pass_fds: Sequence[int] = (),
            merge: bool = False, background: bool = False,
            timeout_raises: bool = True) -> Completed:
    """Run ``argv`` for at most ``timeout`` seconds.

    ``input`` goes to its standard input (else /dev/null); ``pass_fds`` stay
    open in it. ``merge`` puts standard error into ``out``. ``background``
    is for a command that leaves a process behind holding its descriptors
    (``ssh -f``): its output goes nowhere and its errors to a temporary file,
    so that no pipe waits for that process. A timeout raises ``error``
    unless ``timeout_raises`` is False, which returns ``timed_out`` instead.
    """
    logger.debug("Running %s", " ".join(shlex.quote(a) for a in argv))
    err_file = tempfile.TemporaryFile() if background else None
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
            stdout=subprocess.DEVNULL if background else subprocess.PIPE,
            stderr=err_file if background else
            subprocess.STDOUT if merge else subprocess.PIPE,
            env=env, pass_fds=tuple(pass_fds))
    except OSError as err:
        if err_file is not None:
            err_file.close()
        raise error("Cannot run {}: {}; {}.".format(argv[0], err.strerror or err, remedy))
    timed_out = False
    try:
        try:
            out, err_bytes = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err_bytes = proc.communicate()
            timed_out = True
        if err_file is not None:
            err_file.seek(0)
            err_bytes = err_file.read(BACKGROUND_ERRORS)
    finally:
        _stop(proc)  # only does something when interrupted
        if err_file is not None:
            err_file.close()
    if timed_out and timeout_raises:
        raise error("'{}' did not finish within {} seconds; {}.".format(
            " ".join(argv), timeout, remedy))
    return Completed(argv, -1 if timed_out else proc.returncode, _text(out),
                     _text(err_bytes), timed_out)


def run(argv: List[str], error: Type[WwuError], remedy: str,
        timeout: float = COMMAND_TIMEOUT) -> Tuple[int, str]:
    """Exit status and output (stdout + stderr, stripped).

    A command that cannot start or does not finish raises ``error`` with one
    sentence ending in ``remedy``.
    """
    done = execute(argv, error, remedy, timeout, merge=True)
    return done.code, done.out.strip()
