"""``certbot-wwu register``: the seed's ``certbot register`` without the HMAC key
on the command line (DESIGN §7).

The seed recipe types ``certbot register --eab-hmac-key 'hmac-key' ...``: the
key then sits in the shell history, in every user's ``ps`` output while certbot
runs, and in certbot's debug log ("Arguments: [...]"). Here the key is read
from a file, from standard input (``-``) or from a hidden prompt, and reaches
certbot through a certbot config file (``--config /dev/fd/N`` with one line
``eab-hmac-key = ...``) that has no name on any filesystem: an anonymous 0600
file (``O_TMPFILE`` on the memory-backed /dev/shm, else a memfd, else
``O_TMPFILE`` in the temporary directory) that certbot inherits as an open
descriptor. It vanishes with the last process holding it, however that ends:
a SIGKILL of certbot-wwu or of certbot (OOM killer, systemd's final kill,
``timeout -s KILL``) leaves nothing behind (tests/faults/test_kill_register.py).
A regular file, not a pipe: each open of ``/dev/fd/N`` starts at offset 0, so
certbot may read it as often as its argument parser likes (certbot 1.x
re-parses its arguments for ``set_by_cli``; ``register`` on 1.22 and 5.8 was
traced opening it once). certbot's debug log records its argv, which names
only the descriptor. So the key appears in no process's argv or environment,
in no log, in no file and in none of certbot's account files (checked against
Pebble in tests/e2e/test_register.py).

Before certbot runs, everything is checked (preset, server URL, e-mail, key)
and nothing is written. An account that certbot already has for the server
stops the command: certbot would reuse it silently, and EAB credentials work
only once. ``--force`` registers a further account next to it (certbot's own
``register`` refuses that): certbot registers into a fresh private config
directory inside the config dir, and the new account directory is moved to
``accounts/<host>[:port]/<path>/<id>/`` beside the existing ones.

The CA's typical refusals are translated into sentences: reused credentials
("not awaiting external account binding", Sectigo and HARICA), an unknown key
id and a wrong HMAC key (Pebble's wording); other certbot errors are passed on
as one line.
"""
import argparse
import contextlib
import errno
import functools
import getpass
import logging
import os
import re
import shutil
import signal
import stat
import sys
import tempfile
import threading
from typing import Any, Dict, Iterator, List, Optional, Tuple

from certbot_wwu import certbot_host, presets, process
from certbot_wwu.accounts import accounts_dir, existing_accounts
from certbot_wwu.errors import WwuError

logger = logging.getLogger(__name__)

#: a registration is a few requests; certbot's own network timeout is 45 s
#: a request, with retries
REGISTER_TIMEOUT = 600
#: base64 or base64url, optionally padded: what CA portals hand out, and
#: nothing that could end the config line or start another option
_HMAC_KEY = re.compile(r"^[A-Za-z0-9_+/=-]+\Z")
_MAX_KEY_FILE = 4096
_KID = re.compile(r"^[\x21-\x7e]+\Z")
_EMAIL = re.compile(r"^[^@\s,;\"'<>()]+@[^@\s,;\"'<>()]+\.[^@\s,;\"'<>().]+\Z")
_WARNING_LINE = re.compile(r"^\S+\.py:\d+: \w*Warning: ")
_LOGFILE = re.compile(r"See the logfile (\S+?)(?: or |\s|$)")
_NOISE = ("Saving debug log to ", "Ask for help or search for solutions",
          "An unexpected error occurred:", "IMPORTANT NOTES:")


class RegisterError(WwuError):
    """Registration cannot start, or the CA or certbot refused it."""


# --- the subcommand ---------------------------------------------------------------

def add_register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "register", help="register certbot with a CA using EAB credentials",
        description=(
            "Run 'certbot register' with the EAB key id and HMAC key of an "
            "ACME-ID from the CA's portal, keeping the HMAC key out of every "
            "process list and log: it is read from a file, from standard "
            "input (-) or from a hidden prompt, and handed to certbot in an "
            "anonymous 0600 config file that has no name on any filesystem "
            "and vanishes with certbot. This agrees to the CA's terms of "
            "service and declines the EFF mailing "
            "list, as the WWU recipe does. EAB credentials work only once: "
            "copy the resulting accounts/ directory to other hosts that share "
            "the ACME-ID."),
        epilog="Example: certbot-wwu register --preset wwu --server URL "
               "--eab-kid KID --eab-hmac-key-file /root/hmac.txt --email "
               "admin@uni-muenster.de")
    parser.add_argument("--preset", metavar="NAME",
                        help="the CA preset (see 'certbot-wwu presets'); its "
                             "proxy is used unless https_proxy is set")
    parser.add_argument("--server", metavar="URL",
                        help="the ACME directory URL from the portal (needed for "
                             "harica and wwu; alone, without --preset, any CA)")
    parser.add_argument("--eab-kid", metavar="KID",
                        help="the EAB key id (the shorter value from the portal)")
    parser.add_argument("--eab-hmac-key-file", metavar="FILE",
                        help="read the EAB HMAC key (the longer value) from FILE, "
                             "or from standard input with '-'; without it, "
                             "certbot-wwu asks for the key on the terminal")
    # The seed's spelling: never take the key from argv. Declared so that it
    # is not taken for an abbreviation of --eab-hmac-key-file (whose error
    # would repeat the key as a file name).
    parser.add_argument("--eab-hmac-key", dest="eab_hmac_key_argv",
                        metavar="KEY", help=argparse.SUPPRESS)
    parser.add_argument("--email", metavar="ADDR",
                        help="where the CA sends notices (required by harica "
                             "and wwu); several separated by commas")
    parser.add_argument("--force", action="store_true",
                        help="register even though certbot has an account for "
                             "this server: the new account is added next to the "
                             "existing one (certbot's own register refuses "
                             "that); certificates keep renewing with their "
                             "account, new ones for this server then need "
                             "certbot's --account ID")
    certbot_host.certbot_dir_options(parser)
    presets.presets_dir_option(parser)
    parser.add_argument("--certbot", metavar="PATH",
                        help="the certbot to run (default: the one next to this "
                             "Python, else certbot on PATH)")
    parser.set_defaults(func=cmd_register)


def cmd_register(args: argparse.Namespace) -> int:
    request = prepare(args)
    account_ids, moved = run_registration(request)
    _report(request, account_ids, moved)
    return 0


# --- checking the request ---------------------------------------------------------

class Request(object):
    """Everything certbot needs, checked; ``hmac_key`` is the secret."""

    def __init__(self, server: str, kid: Optional[str], hmac_key: Optional[str],
                 email: Optional[str], config_dir: str, work_dir: Optional[str],
                 logs_dir: Optional[str], certbot: str, env: Dict[str, str],
                 existing: List[str]) -> None:
        self.server = server
        self.kid = kid
        self.hmac_key = hmac_key
        self.email = email
        self.config_dir = config_dir
        self.work_dir = work_dir
        self.logs_dir = logs_dir
        self.certbot = certbot
        self.env = env
        #: ids of the accounts certbot already has for the server (--force)
        self.existing = existing

    def __repr__(self) -> str:  # never the key
        return "Request(server={!r}, kid={!r}, config_dir={!r})".format(
            self.server, self.kid, self.config_dir)


def prepare(args: argparse.Namespace,
            stdin: Any = None) -> Request:
    """Check the options, read the key; nothing is written. RegisterError."""
    if getattr(args, "eab_hmac_key_argv", None) is not None:
        raise RegisterError(
            "certbot-wwu does not take the HMAC key on the command line, where "
            "the process list and the shell history show it; put it in a file "
            "for --eab-hmac-key-file FILE, pipe it to --eab-hmac-key-file -, or "
            "leave both out to be asked (and remove it from the shell history).")
    preset = _preset(args)
    server = preset.server_url(args.server)
    kid = _kid(args.eab_kid, preset)
    email = _email(args.email, preset)
    config_dir = os.path.abspath(args.config_dir)
    certbot = certbot_host.find_certbot(args.certbot, error=RegisterError)
    env = certbot_environment(preset)
    existing = existing_accounts(config_dir, server)
    if existing and not args.force:  # before anyone types the key
        raise RegisterError(_existing_sentence(server, config_dir, existing))
    hmac_key = None  # type: Optional[str]
    if kid is not None:
        hmac_key = read_hmac_key(args.eab_hmac_key_file,
                                 sys.stdin if stdin is None else stdin)
        if hmac_key == kid:
            raise RegisterError(
                "The HMAC key is the same as the key id; give the longer of the "
                "two values from the portal as the HMAC key.")
    elif args.eab_hmac_key_file is not None:
        raise RegisterError("An HMAC key without its key id is of no use; add "
                            "--eab-kid KID from the portal.")
    return Request(server, kid, hmac_key, email, config_dir,
                   _abs(args.work_dir), _abs(args.logs_dir), certbot, env, existing)


def _abs(path: Optional[str]) -> Optional[str]:
    return os.path.abspath(path) if path else None


def _preset(args: argparse.Namespace) -> presets.Preset:
    if args.preset:
        return presets.get_preset(args.preset, args.presets_dir)
    if args.server is None or not args.server.strip():
        raise RegisterError(
            "Say which CA to register with: give --preset NAME (see 'certbot-wwu "
            "presets') or the ACME directory URL with --server URL.")
    # a bare --server: an https URL, nothing else known about the CA
    return presets.Preset("--server", source="command line")


def _kid(value: Optional[str], preset: presets.Preset) -> Optional[str]:
    if value is not None and not value.strip():
        raise RegisterError("The key id given with --eab-kid is empty; copy the "
                            "key id from the portal.")
    if value is None:
        if preset.eab_required:
            raise RegisterError(
                "Preset {} needs External Account Binding; give the key id from "
                "the portal with --eab-kid KID.".format(preset.name))
        return None
    value = value.strip()
    if not _KID.match(value) or value.startswith("-"):
        raise RegisterError(
            "The key id {!r} contains spaces, control characters or a leading "
            "'-'; copy the key id exactly as the portal shows it.".format(value))
    return value


def _email(value: Optional[str], preset: presets.Preset) -> Optional[str]:
    if value is None or not value.strip():
        if preset.email_required:
            raise RegisterError(
                "Preset {} requires an e-mail address for the account; add "
                "--email ADDR.".format(preset.name))
        return None
    addresses = [part.strip() for part in value.split(",")]
    for address in addresses:
        if not _EMAIL.match(address):
            raise RegisterError(
                "{!r} is not an e-mail address; give one like "
                "admin@uni-muenster.de (several separated by commas).".format(address))
    return ",".join(addresses)


def read_hmac_key(source: Optional[str], stdin: Any) -> str:
    """The key from FILE, from ``stdin`` ('-') or from a hidden prompt."""
    if source == "-":
        if _isatty(stdin):
            return _check_key(getpass.getpass("EAB HMAC key (not shown): "),
                              "typed")
        text = stdin.read(_MAX_KEY_FILE + 1)
        return _check_key(text, "from standard input")
    if source is not None:
        try:
            with open(source, "rb") as f:
                data = f.read(_MAX_KEY_FILE + 1)
        except OSError as err:
            raise RegisterError(
                "Cannot read the HMAC key file {}: {}; give a readable file "
                "that holds the key.".format(source, err.strerror or err))
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise RegisterError(
                "The HMAC key file {} is not plain text; it should hold only "
                "the key from the portal.".format(source))
        return _check_key(text, "in the file {}".format(source))
    if not _isatty(stdin):
        raise RegisterError(
            "Give the HMAC key with --eab-hmac-key-file FILE, or with "
            "--eab-hmac-key-file - on standard input; it is asked for only "
            "on a terminal.")
    return _check_key(getpass.getpass("EAB HMAC key (not shown): "), "typed")


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _check_key(text: str, where: str) -> str:
    """One line of base64(url); the messages never repeat the key."""
    if len(text) > _MAX_KEY_FILE:
        raise RegisterError("The HMAC key {} is far too long; it should hold only "
                            "the key from the portal.".format(where))
    key = text.strip()
    if not key:
        raise RegisterError("The HMAC key {} is empty; give the HMAC key from the "
                            "portal.".format(where))
    if "\n" in key or "\r" in key:
        raise RegisterError("The HMAC key {} has more than one line; it should "
                            "hold only the key from the portal.".format(where))
    if not _HMAC_KEY.match(key):
        raise RegisterError(
            "The HMAC key {} contains characters other than letters, digits and "
            "-_+/=; copy only the key from the portal.".format(where))
    return key


def certbot_environment(preset: presets.Preset,
                        environ: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The caller's environment plus the preset's proxy, unless one is set."""
    env = dict(os.environ if environ is None else environ)
    if preset.proxy and not (env.get("https_proxy") or env.get("HTTPS_PROXY")):
        env.update(presets.proxy_environment(preset.proxy, preset.no_proxy))
        logger.info("Proxy for certbot: %s", presets.redact_proxy(preset.proxy))
    return env


def _existing_sentence(server: str, config_dir: str, ids: List[str]) -> str:
    return (
        "certbot already has {} for {} in {} ({}), and would reuse it silently "
        "instead of registering, while EAB credentials work only once; keep "
        "using that account (copy it to other hosts), or give --force to "
        "register a further account next to it.".format(
            "an account" if len(ids) == 1 else "{} accounts".format(len(ids)),
            server, accounts_dir(config_dir, server), ", ".join(ids)))


# --- running certbot --------------------------------------------------------------

#: memory first: the key's bytes should not reach a disk, even unlinked
SHM_DIR = "/dev/shm"


def anonymous_file() -> int:
    """A new 0600 file that has no name, open for reading and writing.

    Nothing ever links it into a directory (O_TMPFILE with O_EXCL cannot be
    linked in later), so it is gone with its last descriptor, whoever is
    killed. Tried in order: O_TMPFILE on /dev/shm, a memfd (Python 3.8+), and
    O_TMPFILE in the temporary directory (on disk, but nameless); never a
    named file.
    """
    failures = []  # type: List[str]
    temp = tempfile.gettempdir()
    for place, create in ((SHM_DIR, functools.partial(_tmpfile_in, SHM_DIR)),
                          ("memfd", _memfd),
                          (temp, functools.partial(_tmpfile_in, temp))):
        try:
            fd = create()
        except OSError as err:
            logger.debug("No anonymous file in %s: %s", place, err)
            failures.append("{}: {}".format(place, err.strerror or err))
            continue
        try:
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode) and info.st_nlink == 0:
                os.fchmod(fd, 0o600)
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        failures.append("{}: the file has a name".format(place))
    raise RegisterError(
        "Cannot hand the HMAC key to certbot in a file without a name ({}); "
        "mount a tmpfs on {} (Linux 3.11 or later), or register on another "
        "host and copy its accounts directory here.".format(
            "; ".join(failures), SHM_DIR))


def _tmpfile_in(directory: str) -> int:
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None:
        raise OSError(errno.EOPNOTSUPP, "O_TMPFILE is not available")
    # a kernel before 3.11 reads O_TMPFILE as O_DIRECTORY: EISDIR, no file
    return os.open(directory, flag | os.O_RDWR | os.O_EXCL | os.O_CLOEXEC, 0o600)


def _memfd() -> int:
    memfd_create = getattr(os, "memfd_create", None)  # Python 3.8+, Linux 3.17+
    if memfd_create is None:
        raise OSError(errno.EOPNOTSUPP, "memfd_create needs Python 3.8")
    return memfd_create("certbot-wwu-eab", os.MFD_CLOEXEC)


def write_key_config(hmac_key: str) -> int:
    """certbot's ``--config`` file holding only the key, as an open descriptor
    of an anonymous 0600 file (``anonymous_file``); the caller closes it."""
    fd = anonymous_file()
    data = memoryview("# certbot-wwu register: gone when certbot has finished\n"
                      "eab-hmac-key = {}\n".format(hmac_key).encode("ascii"))
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError as err:
        os.close(fd)
        raise RegisterError(
            "Cannot write the HMAC key into an anonymous file: {}; free some "
            "memory and try again.".format(err.strerror or err))
    except BaseException:
        os.close(fd)
        raise
    return fd


def config_path(fd: int) -> str:
    """The name certbot opens the inherited descriptor by; each open starts
    at offset 0."""
    return "/dev/fd/{}".format(fd)


def certbot_argv(request: Request, config_file: Optional[str],
                 config_dir: str) -> List[str]:
    """certbot's command line: everything but the key."""
    argv = [request.certbot, "register", "--server", request.server,
            "--agree-tos", "--no-eff-email", "--non-interactive",
            "--config-dir", config_dir]
    if config_file:
        argv += ["--config", config_file]
    if request.kid is not None:
        argv += ["--eab-kid", request.kid]
    if request.email:
        argv += ["--email", request.email]
    else:
        argv += ["--register-unsafely-without-email"]
    if request.work_dir:
        argv += ["--work-dir", request.work_dir]
    if request.logs_dir:
        argv += ["--logs-dir", request.logs_dir]
    return argv


#: signals that would otherwise end certbot-wwu and leave certbot running
_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _on_signal(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt()


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt, so ``finally`` runs."""
    previous = {}  # type: Dict[int, Any]
    if threading.current_thread() is threading.main_thread():
        for signum in _SIGNALS:
            previous[signum] = signal.signal(signum, _on_signal)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def _run(argv: List[str], env: Dict[str, str],
         pass_fds: Tuple[int, ...] = ()) -> Tuple[int, str]:
    """Run certbot with ``pass_fds`` open; its exit status and its output.
    An interrupt (SIGTERM, SIGHUP, ^C) ends certbot too (process.execute)."""
    logger.info("Running %s", " ".join(argv))
    done = process.execute(argv, RegisterError, "give the right certbot with "
                           "--certbot PATH and check that the CA is reachable",
                           REGISTER_TIMEOUT, env=env, pass_fds=pass_fds, merge=True)
    return done.code, done.out


def run_registration(request: Request) -> Tuple[List[str], bool]:
    """Register; the new account ids and whether they were moved in (--force)."""
    with _signals_interrupt():
        return _register(request)


def _register(request: Request) -> Tuple[List[str], bool]:
    key_fd = None  # type: Optional[int]
    workspace = None  # type: Optional[str]
    try:
        config_dir = request.config_dir
        if request.existing:  # --force: certbot's register refuses a second one
            workspace = tempfile.mkdtemp(prefix=".certbot-wwu-register-",
                                         dir=request.config_dir)
            os.chmod(workspace, 0o700)
            config_dir = workspace
        config_file = None  # type: Optional[str]
        if request.hmac_key is not None:
            key_fd = write_key_config(request.hmac_key)
            config_file = config_path(key_fd)
        before = existing_accounts(config_dir, request.server)
        code, output = _run(certbot_argv(request, config_file, config_dir),
                            request.env, () if key_fd is None else (key_fd,))
        if request.hmac_key:
            output = output.replace(request.hmac_key, "***")
        if code != 0:
            raise RegisterError(explain_failure(output, request.kid, request.server,
                                                request.config_dir, code))
        new = [i for i in existing_accounts(config_dir, request.server)
               if i not in before]
        if workspace is not None:
            _move_accounts(workspace, request.config_dir, request.server, new)
        return new, workspace is not None
    finally:
        if key_fd is not None:
            os.close(key_fd)  # the file's last descriptor once certbot has ended
        if workspace is not None:
            shutil.rmtree(workspace, ignore_errors=True)


def _move_accounts(workspace: str, config_dir: str, server: str,
                   ids: List[str]) -> None:
    source = accounts_dir(workspace, server)
    target = accounts_dir(config_dir, server)
    if not os.path.isdir(target):
        os.makedirs(target, 0o700)
    for account_id in ids:
        os.rename(os.path.join(source, account_id), os.path.join(target, account_id))
        logger.info("Moved account %s to %s", account_id, target)


def _report(request: Request, ids: List[str], moved: bool) -> None:
    where = accounts_dir(request.config_dir, request.server)
    if not ids:
        print("certbot registered an account for {} in {}.".format(
            request.server, where))
        return
    print("Registered account {} for {} in {}.".format(
        ", ".join(ids), request.server, os.path.join(where, ids[0])))
    if request.kid is not None:
        print("The EAB credentials of key id {} are now used up; to use the "
              "account on other hosts, copy this accounts directory there.".format(
                  request.kid))
    if moved:
        print("It sits next to account {} for the same server: certificates "
              "keep renewing with their own account, and new certbot commands "
              "for this server need --account {} (or --account {}).".format(
                  ", ".join(request.existing), ids[0], request.existing[0]))


# --- certbot's errors -------------------------------------------------------------

def certbot_message(output: str) -> Tuple[str, Optional[str]]:
    """certbot's error as one line (warnings and boilerplate dropped), and its log."""
    logfile = None  # type: Optional[str]
    lines = []  # type: List[str]
    for line in output.splitlines():
        match = _LOGFILE.search(line)
        if match:
            logfile = match.group(1).rstrip(".")
        if (not line.strip() or line[:1].isspace() or _WARNING_LINE.match(line)
                or line.startswith(_NOISE)):
            continue
        lines.append(line.strip())
    return " ".join(lines), logfile


def explain_failure(output: str, kid: Optional[str] = None,
                    server: Optional[str] = None, config_dir: Optional[str] = None,
                    code: int = 1) -> str:
    """One sentence for a failed ``certbot register`` from its output."""
    message, logfile = certbot_message(output)
    lowered = output.lower()
    kid_text = " {}".format(kid) if kid else ""
    if "not awaiting external account binding" in lowered:
        return ("The CA is not awaiting external account binding for key "
                "id{}: these EAB credentials were already used, and they work "
                "only once; create a new ACME-ID in the portal and register with "
                "its new key id and HMAC key.".format(kid_text))
    if "references a key that is not known" in lowered:
        return ("The CA does not know the EAB key id{}: copy the key id (the "
                "shorter value) exactly as the portal shows it, check that the "
                "server URL belongs to it, or create a new ACME-ID if it was "
                "deleted.".format(kid_text))
    if "external account binding jws verification error" in lowered:
        return ("The CA rejected the HMAC key: it does not belong to the EAB key "
                "id{}; copy the HMAC key (the longer value) exactly as the portal "
                "shows it.".format(kid_text))
    if "requires external account binding" in lowered:
        return ("{} requires External Account Binding; give the key id with "
                "--eab-kid KID and the HMAC key with --eab-hmac-key-file FILE "
                "(or - for standard input).".format(server or "The CA"))
    if "there is an existing account" in lowered and server and config_dir:
        return _existing_sentence(server, config_dir,
                                  existing_accounts(config_dir, server) or ["?"])
    details = " (details in {})".format(logfile) if logfile else ""
    if not message:
        return "certbot register exited with status {} without a message{}.".format(
            code, details)
    return "certbot could not register: {}{}.".format(message.rstrip(". "), details)
