"""The encrypted blob vault: round trips, tamper detection, key handling and key rotation (real files)."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from engine.errors import BlobNotFound, ConfigError, InputError, IntegrityError, StorageError
from engine.service import vault as vault_module
from engine.service.vault import Keyring, Vault

NODE = "0123456789abcdef"


@pytest.fixture(autouse=True)
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config"
    monkeypatch.setenv("OPTIMIZER_CONFIG_DIR", str(path))
    return path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def vault(data: Path) -> Vault:
    v = Vault(data, Keyring(NODE))
    yield v
    v.close()


def blob_file(v: Vault, digest: str) -> Path:
    return v.data_dir / "blobs" / digest[:2] / digest


def key_rows(v: Vault) -> dict[str, str]:
    with sqlite3.connect(v.data_dir / "vault.sqlite3") as conn:
        return dict(conn.execute("SELECT digest, kid FROM blob_keys"))


def all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


# --------------------------------------------------------------------------- basics


def test_round_trip_and_content_addressing(vault: Vault) -> None:
    data = b"a scene, or an artifact" * 100
    digest = vault.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert vault.has(digest)
    assert vault.get(digest) == data
    path = blob_file(vault, digest)
    assert path.is_file() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert data not in path.read_bytes()


def test_put_is_idempotent(vault: Vault) -> None:
    data = b"same content"
    first = vault.put(data)
    before = blob_file(vault, first).read_bytes()
    assert vault.put(bytearray(data)) == first
    assert blob_file(vault, first).read_bytes() == before  # not rewritten
    assert len(key_rows(vault)) == 1
    assert [p.name for p in all_files(vault.data_dir / "blobs")] == [first]  # no temp files left


def test_empty_and_multi_segment_blobs(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    assert vault.get(vault.put(b"")) == b""
    monkeypatch.setattr(vault_module, "SEGMENT", 1000)
    for size in (999, 1000, 1001, 5000, 12345):
        data = os.urandom(size)
        assert vault.get(vault.put(data)) == data
    monkeypatch.setattr(vault_module, "SEGMENT", 4096)  # readers take the segment size from the file
    assert vault.get(hashlib.sha256(data).hexdigest()) == data


def test_has_get_delete_and_bad_digests(vault: Vault) -> None:
    digest = vault.put(b"to be deleted")
    vault.delete(digest)
    assert not vault.has(digest)
    assert not blob_file(vault, digest).exists()
    with pytest.raises(BlobNotFound, match=digest):
        vault.get(digest)
    vault.delete(digest)  # again: no-op
    for bad in ("../../etc/passwd", "ABC", "g" * 64, "A" * 64):
        assert not vault.has(bad)
        with pytest.raises(InputError, match="not a blob digest"):
            vault.get(bad)


def test_keys_live_apart_from_the_data(vault: Vault, config: Path, data: Path) -> None:
    vault.put(b"x")
    kid = vault.keyring.active_kid
    key_file = config / "keys" / NODE / f"kek-{kid}.key"
    assert key_file.is_file() and len(key_file.read_bytes()) == 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert (config / "keys" / NODE / "active").read_text().strip() == kid
    key = key_file.read_bytes()
    assert all(key not in p.read_bytes() for p in all_files(data))


def test_a_new_vault_object_reads_what_another_wrote(data: Path) -> None:
    with Vault(data, Keyring(NODE)) as first:
        digest = first.put(b"persisted")
    with Vault(data, Keyring(NODE)) as second:
        assert second.get(digest) == b"persisted"


def test_external_connection(data: Path) -> None:
    data.mkdir()
    conn = sqlite3.connect(data / "shared.sqlite3", isolation_level=None, check_same_thread=False)
    v = Vault(data, Keyring(NODE), db=conn)
    digest = v.put(b"through a given connection")
    assert v.get(digest) == b"through a given connection"
    assert conn.execute("SELECT COUNT(*) FROM blob_keys").fetchone()[0] == 1
    v.close()
    conn.close()


def test_concurrent_puts_of_the_same_content(vault: Vault) -> None:
    data = os.urandom(200_000)
    digests: list[str] = []
    barrier = threading.Barrier(8)

    def put() -> None:
        barrier.wait()
        digests.append(vault.put(data))

    threads = [threading.Thread(target=put) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(digests)) == 1 and len(digests) == 8
    assert vault.get(digests[0]) == data
    assert len(key_rows(vault)) == 1
    assert len(all_files(vault.data_dir / "blobs")) == 1


def test_a_full_disk_is_a_clear_storage_error(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(*args: object) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Vault, "_encrypt_to_temp", no_space)
    with pytest.raises(StorageError, match="No space left on device"):
        vault.put(b"too much")
    assert key_rows(vault) == {}


# --------------------------------------------------------------------------- tampering


@pytest.mark.parametrize("where", ["header", "nonce", "ciphertext", "tag"])
def test_a_flipped_byte_is_detected(vault: Vault, where: str) -> None:
    data = b"the lightmap" * 50
    digest = vault.put(data)
    path = blob_file(vault, digest)
    raw = bytearray(path.read_bytes())
    offset = {"header": 2, "nonce": 9 + 3, "ciphertext": 9 + 12 + 20, "tag": len(raw) - 1}[where]
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match=digest) as info:
        vault.get(digest)
    assert "tampered" in str(info.value) or "damaged" in str(info.value)


def test_truncated_reordered_and_swapped_blobs_are_detected(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vault_module, "SEGMENT", 100)
    data = os.urandom(350)  # 4 segments
    digest = vault.put(data)
    path = blob_file(vault, digest)
    original = path.read_bytes()
    record = 12 + 100 + 16
    header, body = original[:9], original[9:]
    for damaged in (
        original[:-5],  # cut inside the last segment
        header + body[:3 * record],  # last segment dropped: the new last one is not marked last
        header + body[record:2 * record] + body[:record] + body[2 * record:],  # two segments swapped
        original[:5],  # cut inside the header
    ):
        path.write_bytes(damaged)
        with pytest.raises(IntegrityError, match=digest):
            vault.get(digest)
    other = vault.put(b"another blob")
    path.write_bytes(blob_file(vault, other).read_bytes())  # a valid blob under the wrong name
    with pytest.raises(IntegrityError, match=digest):
        vault.get(digest)
    path.unlink()
    with pytest.raises(IntegrityError, match="missing"):
        vault.get(digest)


def test_a_tampered_key_record_is_detected(vault: Vault) -> None:
    digest = vault.put(b"payload")
    with sqlite3.connect(vault.data_dir / "vault.sqlite3") as conn:
        wrapped = bytearray(conn.execute("SELECT wrapped_dek FROM blob_keys").fetchone()[0])
        wrapped[-1] ^= 0x80
        conn.execute("UPDATE blob_keys SET wrapped_dek = ?", (bytes(wrapped),))
    with pytest.raises(IntegrityError, match=digest):
        vault.get(digest)


def test_a_missing_key_file_is_a_config_error_naming_it(vault: Vault, config: Path, data: Path) -> None:
    digest = vault.put(b"payload")
    kid = vault.keyring.active_kid
    vault.close()
    (config / "keys" / NODE / f"kek-{kid}.key").unlink()
    with pytest.raises(ConfigError, match=f"kek-{kid}.key"):
        Vault(data, Keyring(NODE))  # fails early: the active key is unreadable
    (config / "keys" / NODE / "active").unlink()
    fresh = Vault(data, Keyring(NODE))  # makes a new key (with a warning); the old blob needs the old one
    with pytest.raises(ConfigError, match=f"kek-{kid}.key"):
        fresh.get(digest)
    fresh.close()


# --------------------------------------------------------------------------- keyring


def test_keyring_create_and_retire(tmp_path: Path) -> None:
    ring = Keyring(NODE, tmp_path / "ring")
    first = ring.ensure_active()
    assert ring.ensure_active() == first
    second = ring.create()
    assert ring.active_kid == second and ring.kids() == sorted([first, second])
    with pytest.raises(ConfigError, match="active"):
        ring.retire(second)
    ring.retire(first)
    assert not ring.path(first).exists() and ring.kids() == [second]
    with pytest.raises(ConfigError, match=f"kek-{first}.key"):
        ring.key(first)
    ring.retire(first)  # already gone: no-op
    with pytest.raises(ConfigError):
        Keyring("../escape")


# --------------------------------------------------------------------------- rotation


def test_rotation_rewraps_every_key_and_retires_the_old_one(vault: Vault, config: Path) -> None:
    blobs = {vault.put(os.urandom(1000 + i)): None for i in range(7)}
    for digest in blobs:
        blobs[digest] = blob_file(vault, digest).read_bytes()
    old = vault.keyring.active_kid
    report = vault.rotate()
    assert report.rewrapped == 7 and report.retired == (old,) and report.new_kid != old
    assert report.to_dict()["rewrapped"] == 7
    assert vault.keyring.active_kid == report.new_kid
    assert not (config / "keys" / NODE / f"kek-{old}.key").exists()
    assert set(key_rows(vault).values()) == {report.new_kid}
    for digest, encrypted in blobs.items():
        assert blob_file(vault, digest).read_bytes() == encrypted  # blob files untouched
        assert hashlib.sha256(vault.get(digest)).hexdigest() == digest
    with Vault(vault.data_dir, Keyring(NODE)) as again:  # as another process would see it
        assert all(again.has(d) and again.get(d) for d in blobs)
    assert vault_module.rotate(vault).rewrapped == 7  # the module-level form


def test_rotation_of_an_empty_vault(vault: Vault) -> None:
    old = vault.keyring.active_kid
    report = vault.rotate()
    assert report.rewrapped == 0 and report.retired == (old,)


def test_a_rotation_failing_half_way_changes_nothing(vault: Vault, monkeypatch: pytest.MonkeyPatch,
                                                      config: Path) -> None:
    digests = [vault.put(f"blob {i}".encode()) for i in range(5)]
    old = vault.keyring.active_kid
    rows_before = key_rows(vault)
    real_wrap = vault_module.wrap_dek
    calls = 0

    def failing_wrap(*args: object) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError("disk on fire")
        return real_wrap(*args)

    monkeypatch.setattr(vault_module, "wrap_dek", failing_wrap)
    with pytest.raises(StorageError, match="nothing was changed") as info:
        vault.rotate()
    assert "disk on fire" in str(info.value)
    assert key_rows(vault) == rows_before  # every data key still wrapped with the old key
    assert (config / "keys" / NODE / f"kek-{old}.key").exists()
    for i, digest in enumerate(digests):
        assert vault.get(digest) == f"blob {i}".encode()
    monkeypatch.setattr(vault_module, "wrap_dek", real_wrap)
    report = vault.rotate()  # the next rotation also retires the key the failed one made
    assert report.rewrapped == 5 and old in report.retired and len(report.retired) == 2
    assert vault.keyring.kids() == [report.new_kid]
    assert [vault.get(d) for d in digests] == [f"blob {i}".encode() for i in range(5)]


def _rotate_and_die_on_third_wrap(data_dir: str, config_dir: str) -> None:
    """Child process: a rotation killed (no cleanup at all) in the middle of its transaction."""
    os.environ["OPTIMIZER_CONFIG_DIR"] = config_dir
    real_wrap = vault_module.wrap_dek
    calls = [0]

    def dying_wrap(*args: object) -> bytes:
        calls[0] += 1
        if calls[0] == 3:
            os._exit(9)
        return real_wrap(*args)

    vault_module.wrap_dek = dying_wrap
    Vault(Path(data_dir), Keyring(NODE)).rotate()


def test_a_rotation_killed_half_way_leaves_everything_readable(vault: Vault, config: Path) -> None:
    digests = [vault.put(os.urandom(500)) for _ in range(6)]
    old = vault.keyring.active_kid
    rows_before = key_rows(vault)
    child = multiprocessing.get_context("spawn").Process(
        target=_rotate_and_die_on_third_wrap, args=(str(vault.data_dir), str(config)))
    child.start()
    child.join(60)
    assert child.exitcode == 9
    assert key_rows(vault) == rows_before
    assert (config / "keys" / NODE / f"kek-{old}.key").exists()
    assert all(hashlib.sha256(vault.get(d)).hexdigest() == d for d in digests)
    report = vault.rotate()
    assert report.rewrapped == 6 and vault.keyring.kids() == [report.new_kid]
    assert all(hashlib.sha256(vault.get(d)).hexdigest() == d for d in digests)


def test_puts_and_gets_during_rotations_stay_readable(vault: Vault) -> None:
    stop = threading.Event()
    stored: list[str] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            i = 0
            while not stop.is_set():
                digest = vault.put(f"concurrent {threading.get_ident()} {i}".encode())
                stored.append(digest)
                vault.get(digest)
                i += 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(5):
            vault.rotate()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert stored
    report = vault.rotate()
    assert vault.keyring.kids() == [report.new_kid]
    assert all(hashlib.sha256(vault.get(d)).hexdigest() == d for d in set(stored))
