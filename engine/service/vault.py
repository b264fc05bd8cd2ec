"""Encryption at rest: a content-addressed blob store with envelope encryption (AES-256-GCM).

* A blob is addressed by the sha256 (hex) of its plaintext and lives in
  ``data_dir/blobs/<digest[:2]>/<digest>``, encrypted with its own random 256-bit data key (DEK).
* The DEK is wrapped with the node's active key-encryption key (KEK) and recorded in
  ``data_dir/vault.sqlite3`` (table ``blob_keys``).
* KEKs live apart from the data, in ``config_dir()/keys/<node_id>/kek-<kid>.key``: a copy of the
  data directory alone reveals nothing.
* ``Vault.rotate()`` re-wraps every DEK with a new KEK in one transaction and then deletes the
  old KEKs; blob files are never rewritten.

Blob file layout (all AES-GCM, 96-bit random nonces; no plaintext ever reaches the disk)::

    header   b"OPTV" | version (1 byte) | segment size (uint32 BE, plaintext bytes per segment)
    segment* nonce (12) | ciphertext + tag (16)      AAD = header | digest | index (uint64 BE) | last (1 byte)

Blobs are cut into segments so that any size can be stored (one AES-GCM call takes < 2 GiB) and
written without a second full copy in memory; the index and the "last" flag in the AAD make
reordered, dropped or truncated segments fail authentication. Reading also checks that the
plaintext hashes to the digest, so a blob is returned exactly as stored or not at all.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import sqlite3
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from engine.errors import BlobNotFound, ConfigError, InputError, IntegrityError, StorageError
from engine.service.db import Database, check_schema, set_schema
from engine.service.security import (
    config_dir,
    ensure_private_dir,
    fsync_dir,
    open_temp,
    read_private_file,
    replace_file,
    write_new_file,
)

log = logging.getLogger(__name__)

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12
TAG_BYTES = 16
SEGMENT = 8 << 20  # plaintext bytes per segment of a new blob (readers take the size from the header)
MAGIC = b"OPTV"
FORMAT_VERSION = 1
_HEADER = struct.Struct(">4sBI")
SCHEMA_VERSION = 1

_KID_RE = re.compile(r"^[0-9a-f]{8}$")
_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
_NODE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def is_digest(value: object) -> bool:
    """Whether ``value`` is a lowercase sha256 hex digest (the only names the vault accepts)."""
    return isinstance(value, str) and _DIGEST_RE.match(value) is not None


def _check_digest(digest: object) -> str:
    if not is_digest(digest):
        raise InputError(f"{digest!r} is not a blob digest", hint="a digest is 64 lowercase hex characters (sha256)")
    return str(digest)


# ---------------------------------------------------------------------------------------------
# key-encryption keys


class Keyring:
    """The node's key-encryption keys: ``kek-<kid>.key`` files (32 random bytes, 0600) and an ``active`` file.

    The default directory is ``config_dir()/keys/<node_id>``, apart from the data directory.
    """

    def __init__(self, node_id: str, directory: Path | None = None) -> None:
        if not isinstance(node_id, str) or not _NODE_ID_RE.match(node_id):
            raise ConfigError(f"{node_id!r} is not a usable node id", hint="letters, digits, '-' and '_' only")
        self.node_id = node_id
        if directory is None:
            directory = ensure_private_dir(config_dir() / "keys") / node_id
        self.directory = ensure_private_dir(Path(directory))
        self._cache: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def path(self, kid: str) -> Path:
        """The file of key ``kid``."""
        return self.directory / f"kek-{kid}.key"

    def _read_active(self) -> str | None:
        path = self.directory / "active"
        try:
            text = read_private_file(path).decode("ascii", "replace").strip()
        except FileNotFoundError:
            return None
        if not _KID_RE.match(text):
            raise ConfigError("the active-key file does not name a key", where=str(path),
                              hint="write the kid (8 hex characters) of an existing kek-<kid>.key file into it")
        return text

    @property
    def active_kid(self) -> str:
        """The kid of the key new data keys are wrapped with (read from disk each time: another process may rotate)."""
        kid = self._read_active()
        if kid is None:
            raise ConfigError("no active key-encryption key", where=str(self.directory / "active"),
                              hint="the vault makes one at first start; if the keys directory was lost, restore it "
                                   "from a backup")
        return kid

    def kids(self) -> list[str]:
        """The kids of every key file present, sorted."""
        found = []
        for path in self.directory.glob("kek-*.key"):
            kid = path.name[4:-4]
            if _KID_RE.match(kid):
                found.append(kid)
        return sorted(found)

    def key(self, kid: str) -> bytes:
        """Key ``kid``'s 32 bytes; ConfigError naming the file when it is missing or damaged."""
        if not isinstance(kid, str) or not _KID_RE.match(kid):
            raise ConfigError(f"{kid!r} is not a key id", where=str(self.directory))
        with self._lock:
            cached = self._cache.get(kid)
        if cached is not None:
            return cached
        path = self.path(kid)
        try:
            data = read_private_file(path)
        except FileNotFoundError:
            raise ConfigError(
                f"key-encryption key {kid} is missing", where=str(path),
                hint="restore the keys directory (kept apart from the data on purpose) from a backup; without it the "
                     "blobs wrapped with this key cannot be read",
            ) from None
        if len(data) != KEY_BYTES:
            raise ConfigError(f"key-encryption key {kid} is damaged ({len(data)} bytes, expected {KEY_BYTES})",
                              where=str(path), hint="restore the keys directory from a backup")
        with self._lock:
            self._cache[kid] = data
        return data

    def create(self) -> str:
        """Make a new random key and make it the active one; returns its kid."""
        while True:
            kid = secrets.token_hex(4)
            try:
                write_new_file(self.path(kid), os.urandom(KEY_BYTES), 0o600)
                break
            except FileExistsError:
                continue
        replace_file(self.directory / "active", (kid + "\n").encode("ascii"), 0o600)
        log.info("keyring %s: new key-encryption key %s is now active", self.node_id, kid)
        return kid

    def ensure_active(self) -> str:
        """The active kid, making a first key when there is none; fails early if the active key is unreadable."""
        kid = self._read_active()
        if kid is None:
            kid = self.create()
        self.key(kid)
        return kid

    def retire(self, kid: str) -> None:
        """Delete key ``kid`` (overwritten first, best effort). Refuses the active key; a missing key is a no-op."""
        if not isinstance(kid, str) or not _KID_RE.match(kid):
            raise ConfigError(f"{kid!r} is not a key id", where=str(self.directory))
        if kid == self._read_active():
            raise ConfigError(f"key {kid} is the active key and cannot be retired", where=str(self.path(kid)),
                              hint="rotate first: a new key becomes active, then the old one is retired")
        path = self.path(kid)
        try:
            with open(path, "r+b") as fh:  # best effort: copy-on-write file systems and SSDs may keep old blocks
                fh.write(b"\0" * KEY_BYTES)
                fh.flush()
                os.fsync(fh.fileno())
            path.unlink()
        except FileNotFoundError:
            log.debug("keyring %s: key %s already gone", self.node_id, kid)
        else:
            fsync_dir(self.directory)
            log.info("keyring %s: retired key-encryption key %s", self.node_id, kid)
        with self._lock:
            self._cache.pop(kid, None)


# ---------------------------------------------------------------------------------------------
# data-key wrapping (module functions so that tests can make them fail)


def _wrap_aad(digest: str, kid: str) -> bytes:
    return f"optimizer-dek|{digest}|{kid}".encode("ascii")


def wrap_dek(kek: bytes, dek: bytes, digest: str, kid: str) -> bytes:
    """Encrypt data key ``dek`` with ``kek``: nonce + ciphertext + tag, bound to the digest and the kid."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(kek).encrypt(nonce, dek, _wrap_aad(digest, kid))


def unwrap_dek(kek: bytes, wrapped: bytes, digest: str, kid: str) -> bytes:
    """The data key inside ``wrapped``; InvalidTag when the key, digest or kid do not match."""
    return AESGCM(kek).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _wrap_aad(digest, kid))


def _segment_aad(header: bytes, digest: str, index: int, last: bool) -> bytes:
    return header + digest.encode("ascii") + struct.pack(">QB", index, 1 if last else 0)


@dataclass(frozen=True)
class RotationReport:
    """What a key rotation did."""

    rewrapped: int  # data keys re-wrapped with the new key
    new_kid: str
    retired: tuple[str, ...]  # key-encryption keys deleted because nothing used them any more

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {"rewrapped": self.rewrapped, "new_kid": self.new_kid, "retired": list(self.retired)}


# ---------------------------------------------------------------------------------------------
# the vault


class Vault:
    """Content-addressed, encrypted blob store. Safe to use from several threads and processes."""

    def __init__(self, data_dir: Path, keyring: Keyring, db: sqlite3.Connection | None = None) -> None:
        self.data_dir = ensure_private_dir(Path(data_dir), tighten=False)
        self.blob_dir = ensure_private_dir(self.data_dir / "blobs")
        self.keyring = keyring
        self._db = Database(self.data_dir / "vault.sqlite3", external=db)
        with self._db.write(durable=True) as conn:
            found = check_schema(conn, "vault_schema", SCHEMA_VERSION, self._db.path)
            if found < SCHEMA_VERSION:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS blob_keys ("
                    " digest TEXT PRIMARY KEY, kid TEXT NOT NULL, wrapped_dek BLOB NOT NULL, created_at REAL NOT NULL)"
                )
                conn.execute("CREATE INDEX IF NOT EXISTS blob_keys_kid ON blob_keys(kid)")
                set_schema(conn, "vault_schema", SCHEMA_VERSION)
            stale = conn.execute("SELECT COUNT(*) FROM blob_keys").fetchone()[0] if self._no_active_key() else 0
        if stale:
            log.warning("vault %s: %d blobs are stored but keyring %s has no active key; making a new one (the "
                        "existing blobs need their old keys back)", self.data_dir, stale, keyring.node_id)
        keyring.ensure_active()

    def _no_active_key(self) -> bool:
        try:
            self.keyring.active_kid  # noqa: B018 - reading it is the check
        except ConfigError:
            return True
        return False

    def _path(self, digest: str) -> Path:
        return self.blob_dir / digest[:2] / digest

    # -- writing --------------------------------------------------------------------------------

    def _encrypt_to_temp(self, directory: Path, digest: str, data: memoryview, dek: bytes) -> Path:
        """Encrypt ``data`` segment by segment into a new temporary file in ``directory`` (fsynced)."""
        segment = max(1, int(SEGMENT))
        header = _HEADER.pack(MAGIC, FORMAT_VERSION, segment)
        aead = AESGCM(dek)
        count = max(1, -(-len(data) // segment))
        tmp, fd = open_temp(directory, digest, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(header)
                for index in range(count):
                    chunk = data[index * segment:(index + 1) * segment]
                    nonce = os.urandom(NONCE_BYTES)
                    fh.write(nonce)
                    fh.write(aead.encrypt(nonce, chunk, _segment_aad(header, digest, index, index == count - 1)))
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def put(self, data: bytes) -> str:
        """Store ``data`` encrypted; returns its digest (sha256 hex of the plaintext). Same content is stored once."""
        view = memoryview(data).cast("B")
        digest = hashlib.sha256(view).hexdigest()
        if self.has(digest):
            return digest
        path = self._path(digest)
        try:
            return self._put(view, digest, path)
        except OSError as exc:
            raise StorageError(f"cannot store blob {digest}: {exc.strerror or exc}", where=str(path),
                               hint="check the free space and permissions of the data directory") from exc

    def _put(self, view: memoryview, digest: str, path: Path) -> str:
        directory = ensure_private_dir(path.parent)
        dek = AESGCM.generate_key(bit_length=256)
        tmp = self._encrypt_to_temp(directory, digest, view, dek)  # the slow part, outside the lock
        try:
            while True:
                with self._db.write(durable=True) as conn:
                    row = conn.execute("SELECT 1 FROM blob_keys WHERE digest = ?", (digest,)).fetchone()
                    if row is not None and path.is_file():
                        return digest  # another thread or process stored it meanwhile
                    if row is not None:
                        # Recorded but the file is gone: forget the stale key in its own commit, so that a crash
                        # below can never leave a new file next to an old key.
                        log.warning("vault: blob %s was recorded but its file was missing; storing it again", digest)
                        conn.execute("DELETE FROM blob_keys WHERE digest = ?", (digest,))
                        continue
                    # Inside the write lock: a rotation cannot change the active kid under us, and file and key
                    # are published together (a crash before COMMIT leaves an unrecorded file that the next put
                    # replaces).
                    kid = self.keyring.active_kid
                    wrapped = wrap_dek(self.keyring.key(kid), dek, digest, kid)
                    os.replace(tmp, path)
                    fsync_dir(directory)
                    conn.execute(
                        "INSERT INTO blob_keys (digest, kid, wrapped_dek, created_at) VALUES (?, ?, ?, ?)",
                        (digest, kid, wrapped, time.time()),
                    )
                break
        finally:
            tmp.unlink(missing_ok=True)
        log.debug("vault: stored blob %s (%d bytes)", digest, len(view))
        return digest

    # -- reading --------------------------------------------------------------------------------

    def has(self, digest: str) -> bool:
        """Whether a blob with this digest is stored (its key recorded and its file present)."""
        if not is_digest(digest):
            return False
        row = self._db.conn().execute("SELECT 1 FROM blob_keys WHERE digest = ?", (digest,)).fetchone()
        return row is not None and self._path(digest).is_file()

    def _data_key(self, digest: str) -> bytes:
        for attempt in range(2):
            row = self._db.conn().execute(
                "SELECT kid, wrapped_dek FROM blob_keys WHERE digest = ?", (digest,)
            ).fetchone()
            if row is None:
                raise BlobNotFound(f"no blob {digest} in the vault", where=str(self.data_dir))
            kid, wrapped = str(row[0]), bytes(row[1])
            try:
                kek = self.keyring.key(kid)
            except ConfigError:
                if attempt == 0:  # a rotation in another process may have just re-wrapped it and retired the key
                    continue
                raise
            try:
                return unwrap_dek(kek, wrapped, digest, kid)
            except (InvalidTag, ValueError):
                raise IntegrityError(
                    f"the data key of blob {digest} does not decrypt with key-encryption key {kid}",
                    where=str(self._db.path),
                    hint="vault.sqlite3 or the key file was altered or swapped; restore both from the same backup",
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def get(self, digest: str) -> bytes:
        """The plaintext of blob ``digest``, authenticated and hash-checked.

        Raises BlobNotFound if it is not stored, IntegrityError if it is corrupt or tampered with.
        """
        digest = _check_digest(digest)
        dek = self._data_key(digest)
        path = self._path(digest)
        hint = "the blob file was damaged or altered; restore the data directory from a backup, or delete the blob"
        if not path.is_file():
            raise IntegrityError(f"blob {digest} is recorded but its file is missing", where=str(path),
                                 hint="restore the data directory from a backup, or store the content again")
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            header = fh.read(_HEADER.size)
            if len(header) != _HEADER.size:
                raise IntegrityError(f"blob {digest} is truncated", where=str(path), hint=hint)
            magic, version, segment = _HEADER.unpack(header)
            if magic != MAGIC or version != FORMAT_VERSION or not 1 <= segment <= 1 << 30:
                raise IntegrityError(f"blob {digest} has an unknown or damaged header", where=str(path), hint=hint)
            body = size - _HEADER.size
            full = NONCE_BYTES + segment + TAG_BYTES
            count = max(1, -(-body // full))
            last_len = body - (count - 1) * full
            if last_len < NONCE_BYTES + TAG_BYTES:
                raise IntegrityError(f"blob {digest} is truncated", where=str(path), hint=hint)
            aead = AESGCM(dek)
            parts: list[bytes] = []
            hasher = hashlib.sha256()
            for index in range(count):
                record = fh.read(full if index < count - 1 else last_len)
                try:
                    plain = aead.decrypt(record[:NONCE_BYTES], record[NONCE_BYTES:],
                                         _segment_aad(header, digest, index, index == count - 1))
                except InvalidTag:
                    raise IntegrityError(
                        f"blob {digest} is corrupt or has been tampered with (authentication failed in segment "
                        f"{index + 1} of {count})", where=str(path), hint=hint,
                    ) from None
                hasher.update(plain)
                parts.append(plain)
        if hasher.hexdigest() != digest:
            raise IntegrityError(f"blob {digest} decrypts to content with another digest", where=str(path), hint=hint)
        return b"".join(parts)

    # -- deleting and rotating -------------------------------------------------------------------

    def delete(self, digest: str) -> None:
        """Remove blob ``digest`` (its file and its key). Unknown digests are a no-op.

        The vault keeps no reference counts: the caller makes sure nothing else uses the blob.
        """
        digest = _check_digest(digest)
        path = self._path(digest)
        with self._db.write(durable=True) as conn:
            path.unlink(missing_ok=True)
            conn.execute("DELETE FROM blob_keys WHERE digest = ?", (digest,))
        if path.parent.is_dir():
            fsync_dir(path.parent)

    def rotate(self) -> RotationReport:
        """Re-wrap every data key with a new KEK (one transaction), then retire KEKs nothing uses.

        Crash-safe: until the transaction commits every blob stays wrapped with its old key, and
        old keys are deleted only afterwards. Blob files are not touched.
        """
        new_kid = self.keyring.create()
        new_kek = self.keyring.key(new_kid)
        rewrapped = 0
        digest = ""
        try:
            with self._db.write(durable=True) as conn:
                while True:
                    rows = conn.execute(
                        "SELECT digest, kid, wrapped_dek FROM blob_keys WHERE kid != ? AND digest > ? "
                        "ORDER BY digest LIMIT 1000", (new_kid, digest),
                    ).fetchall()
                    if not rows:
                        break
                    for digest, kid, wrapped in rows:
                        try:
                            dek = unwrap_dek(self.keyring.key(kid), bytes(wrapped), digest, kid)
                        except InvalidTag:
                            raise IntegrityError(f"the data key of blob {digest} does not decrypt with key {kid}",
                                                 where=str(self._db.path)) from None
                        conn.execute("UPDATE blob_keys SET kid = ?, wrapped_dek = ? WHERE digest = ?",
                                     (new_kid, wrap_dek(new_kek, dek, digest, new_kid), digest))
                        rewrapped += 1
        except Exception as exc:
            log.error("vault %s: key rotation failed at blob %s: %s", self.data_dir, digest or "-", exc)
            raise StorageError(
                f"key rotation failed at blob {digest or '-'} ({exc}); nothing was changed: every blob is still "
                f"wrapped with its old key, which was kept",
                where=str(self._db.path), hint="fix the cause and rotate again",
            ) from exc
        retired = self._retire_unused()
        log.info("vault %s: rotated to key %s (%d data keys re-wrapped, retired %s)", self.data_dir, new_kid,
                 rewrapped, ", ".join(retired) or "none")
        return RotationReport(rewrapped, new_kid, tuple(retired))

    def _retire_unused(self) -> list[str]:
        retired = []
        # Under the write lock: no put can record a key with a kid while we decide to delete it.
        with self._db.write(durable=True) as conn:
            used = {str(r[0]) for r in conn.execute("SELECT DISTINCT kid FROM blob_keys")}
            active = self.keyring.active_kid
            for kid in self.keyring.kids():
                if kid != active and kid not in used:
                    self.keyring.retire(kid)
                    retired.append(kid)
        return retired

    def close(self) -> None:
        """Close this vault's database connections."""
        self._db.close()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rotate(vault: Vault) -> RotationReport:
    """Rotate ``vault``'s key-encryption key (see ``Vault.rotate``)."""
    return vault.rotate()


__all__ = ["Keyring", "RotationReport", "Vault", "is_digest", "rotate", "unwrap_dek", "wrap_dek"]
