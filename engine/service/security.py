"""Node security: the config directory, the bearer token, the node's Ed25519 identity, bind checks.

Secrets are files only their owner can read (0600 in 0700 directories), created atomically: a
temporary file opened with ``O_CREAT | O_EXCL`` and mode 0600, fsynced, then linked into place, so a
crash never leaves a half-written secret and two processes starting together agree on one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from engine.errors import ConfigError

log = logging.getLogger(__name__)

_POSIX = os.name == "posix"


# ---------------------------------------------------------------------------------------------
# private files and directories (also used by the vault)


def ensure_private_dir(path: Path, *, tighten: bool = True) -> Path:
    """Create ``path`` (and missing parents) with mode 0700.

    An existing directory that group or others can enter is tightened to 0700 with a warning when
    ``tighten`` is true, and left alone otherwise (used for a data directory the user chose).
    """
    path = Path(path)
    if not path.is_dir():
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
            if _POSIX:
                os.chmod(path, 0o700)  # mkdir's mode is masked by the umask
        except OSError as exc:
            raise ConfigError(f"cannot create the directory: {exc.strerror or exc}", where=str(path)) from exc
        return path
    if tighten and _POSIX:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("%s: directory was readable by others (mode %o); tightened to 0700", path, mode)
            os.chmod(path, 0o700)
    return path


def fsync_dir(path: Path) -> None:
    """Flush a directory entry change (a new, renamed or removed file) to disk, where the OS allows."""
    if not _POSIX:
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def open_temp(directory: Path, stem: str, mode: int = 0o600) -> tuple[Path, int]:
    """A new temporary file ``.<stem>.<random>.tmp`` in ``directory``, created O_EXCL with ``mode``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = directory / f".{stem}.{secrets.token_hex(6)}.tmp"
        try:
            return tmp, os.open(tmp, flags, mode)
        except FileExistsError:
            continue


def _write_temp(directory: Path, stem: str, data: bytes, mode: int) -> Path:
    """Write ``data`` to a new, fsynced temporary file in ``directory`` (created O_EXCL with ``mode``)."""
    tmp, fd = open_temp(directory, stem, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_new_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Atomically create ``path`` holding ``data`` with ``mode``; FileExistsError if it already exists.

    Never overwrites: when two processes race, exactly one wins and the other sees FileExistsError.
    """
    path = Path(path)
    tmp = _write_temp(path.parent, path.name, data, mode)
    try:
        os.link(tmp, path)  # atomic, and fails if the name is taken
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def replace_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Atomically write ``path`` (created or replaced) holding ``data`` with ``mode``."""
    path = Path(path)
    tmp = _write_temp(path.parent, path.name, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def read_private_file(path: Path) -> bytes:
    """Read a secret file; if group or others can read it, tighten it to 0600 and log a warning.

    FileNotFoundError passes through (callers create the file); other problems are ConfigError.
    """
    path = Path(path)
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError("not a regular file", where=str(path), hint="remove it so that a new one is made")
    if _POSIX and stat.S_IMODE(st.st_mode) & 0o077:
        log.warning("%s: secret file was readable by others (mode %o); tightened to 0600",
                    path, stat.S_IMODE(st.st_mode))
        os.chmod(path, 0o600)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", where=str(path)) from exc


# ---------------------------------------------------------------------------------------------
# config directory and bearer token


def config_dir() -> Path:
    """The node's config directory (mode 0700): ``$OPTIMIZER_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/optimizer``,
    else ``~/.config/optimizer``."""
    explicit = os.environ.get("OPTIMIZER_CONFIG_DIR")
    if explicit:
        path = Path(explicit).expanduser()
    else:
        xdg = os.environ.get("XDG_CONFIG_HOME")
        base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
        path = base / "optimizer"
    return ensure_private_dir(path)


def load_or_create_token(path: Path | None = None) -> tuple[str, Path]:
    """The node's bearer token and its file (default ``config_dir()/token``), made at first call.

    A new token is ``secrets.token_urlsafe(32)`` (256 bits). A file with looser permissions than
    0600 is tightened with a warning. Returns ``(token, path)``.
    """
    if path is None:
        path = config_dir() / "token"
    else:
        path = Path(path).expanduser()
        ensure_private_dir(path.parent, tighten=False)
    try:
        raw = read_private_file(path)
    except FileNotFoundError:
        token = secrets.token_urlsafe(32)
        try:
            write_new_file(path, (token + "\n").encode("ascii"), 0o600)
            log.info("created a new API token in %s", path)
        except FileExistsError:
            log.debug("%s: another process created the token first; using it", path)
        raw = read_private_file(path)
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        token = ""
    if not token or not all(33 <= ord(c) < 127 for c in token):
        raise ConfigError("the token file is empty or holds characters a bearer token cannot have", where=str(path),
                          hint="delete the file and restart the engine to make a new token")
    if len(token) < 16:
        log.warning("%s: the API token is only %d characters long; a longer one is safer", path, len(token))
    return token, path


def check_token(expected: str, presented: str | None) -> bool:
    """Whether ``presented`` is the node's token, compared in constant time."""
    if presented is None or not expected:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), presented.encode("utf-8", "surrogatepass"))


# ---------------------------------------------------------------------------------------------
# node identity


@dataclass(frozen=True)
class NodeIdentity:
    """Who this node is to its peers: a short id and the Ed25519 public key it signs with."""

    node_id: str  # first 16 hex chars of sha256(raw public key)
    public_key_b64: str  # raw 32-byte Ed25519 public key, standard base64

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form."""
        return {"node_id": self.node_id, "public_key": self.public_key_b64}


def node_id_for(public_key_raw: bytes) -> str:
    """The node id belonging to a raw Ed25519 public key (lets peers check a claimed id)."""
    return hashlib.sha256(public_key_raw).hexdigest()[:16]


def load_or_create_identity(data_dir: Path) -> tuple[NodeIdentity, Ed25519PrivateKey]:
    """The node's identity key, made at first start in ``data_dir/identity/ed25519.pem``.

    PKCS8 PEM, unencrypted, mode 0600 in a 0700 directory. Losing it gives the node a new
    identity (peers see a stranger; reputation starts again).
    """
    directory = ensure_private_dir(ensure_private_dir(Path(data_dir), tighten=False) / "identity")
    path = directory / "ed25519.pem"
    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        try:
            write_new_file(path, pem, 0o600)
            log.info("created a new node identity key in %s", path)
        except FileExistsError:
            log.debug("%s: another process created the identity first; using it", path)
    pem = read_private_file(path)
    hint = ("restore it from a backup; deleting it gives this node a new identity, which peers treat as a "
            "stranger")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"cannot read the node's private key ({exc})", where=str(path), hint=hint) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError("the node's private key is not an Ed25519 key", where=str(path), hint=hint)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return NodeIdentity(node_id_for(raw), base64.b64encode(raw).decode("ascii")), key


def sign(private_key: Ed25519PrivateKey, data: bytes) -> bytes:
    """An Ed25519 signature (64 bytes) of ``data``."""
    return private_key.sign(data)


def verify(public_key_b64: str, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is a valid Ed25519 signature of ``data`` by ``public_key_b64``.

    A malformed key or signature is simply not valid: False, never an exception.
    """
    try:
        raw = base64.b64decode(public_key_b64, validate=True)
        public_key = Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError, TypeError) as exc:
        log.debug("verify: malformed public key: %s", exc)
        return False
    if not isinstance(signature, bytes | bytearray | memoryview) or len(signature) != 64:
        return False
    try:
        public_key.verify(bytes(signature), data)
    except InvalidSignature:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# bind address


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address: 127.0.0.0/8, ::1 (also IPv4-mapped) or ``localhost``."""
    name = host.strip()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name.lower().rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def check_bind(host: str, tls_cert: Path | None, tls_key: Path | None) -> None:
    """Refuse to listen beyond loopback without TLS (ConfigError); loopback is always allowed.

    The bearer token is required on every address; TLS keeps it (and the scenes) off the wire
    in clear text.
    """
    if is_loopback(host):
        return
    hint = "pass --tls-cert FILE and --tls-key FILE, or bind to 127.0.0.1 (a bearer token is required either way)"
    shown = host or "all interfaces"
    if tls_cert is None or tls_key is None:
        missing = " and ".join(n for n, v in (("--tls-cert", tls_cert), ("--tls-key", tls_key)) if v is None)
        raise ConfigError(f"listening on a non-loopback address needs TLS, but {missing} was not given",
                          where=shown, hint=hint)
    for flag, file in (("--tls-cert", tls_cert), ("--tls-key", tls_key)):
        if not Path(file).is_file():
            raise ConfigError(f"the {flag} file does not exist", where=str(file), hint=hint)


__all__ = [
    "NodeIdentity",
    "check_bind",
    "check_token",
    "config_dir",
    "ensure_private_dir",
    "is_loopback",
    "load_or_create_identity",
    "load_or_create_token",
    "node_id_for",
    "read_private_file",
    "replace_file",
    "sign",
    "verify",
    "write_new_file",
]
