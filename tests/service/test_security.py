"""Node security: config dir, bearer token file, Ed25519 identity, bind checks (real files in tmp_path)."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from engine.errors import ConfigError
from engine.service import security
from engine.service.security import (
    check_bind,
    check_token,
    config_dir,
    load_or_create_identity,
    load_or_create_token,
    sign,
    verify,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config"
    monkeypatch.setenv("OPTIMIZER_CONFIG_DIR", str(path))
    return path


# --------------------------------------------------------------------------- config dir


def test_config_dir_from_env_is_created_private(config: Path) -> None:
    assert config_dir() == config
    assert config.is_dir() and mode(config) == 0o700


def test_config_dir_falls_back_to_xdg_then_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPTIMIZER_CONFIG_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config_dir() == tmp_path / "xdg" / "optimizer"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config_dir() == tmp_path / "home" / ".config" / "optimizer"
    assert mode(tmp_path / "home" / ".config" / "optimizer") == 0o700


# --------------------------------------------------------------------------- token


def test_token_is_created_0600_and_reused(config: Path) -> None:
    token, path = load_or_create_token()
    assert path == config / "token"
    assert mode(path) == 0o600
    assert len(token) >= 43  # token_urlsafe(32): 256 bits
    again, _ = load_or_create_token()
    assert again == token
    assert not [p for p in config.iterdir() if p.name != "token"], "no temporary files left behind"


def test_token_with_loose_permissions_is_tightened_with_a_warning(config: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    token, path = load_or_create_token()
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING, logger="engine.service.security"):
        assert load_or_create_token()[0] == token
    assert mode(path) == 0o600
    assert any("0600" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)


def test_token_at_explicit_path_and_hand_written_token(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere" / "api.token"
    token, got = load_or_create_token(path)
    assert got == path and path.read_text().strip() == token
    path.write_text("my-own-long-token-0123456789\n")
    os.chmod(path, 0o600)
    assert load_or_create_token(path)[0] == "my-own-long-token-0123456789"


def test_empty_token_file_is_refused(config: Path) -> None:
    config.mkdir(mode=0o700)
    (config / "token").write_text("  \n")
    with pytest.raises(ConfigError, match="token"):
        load_or_create_token()


def test_concurrent_first_start_agrees_on_one_token(config: Path) -> None:
    results: list[str] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        results.append(load_or_create_token()[0])

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert (config / "token").read_text().strip() == results[0]


def test_check_token() -> None:
    assert check_token("s3cret-token", "s3cret-token")
    assert not check_token("s3cret-token", "s3cret-tokeN")
    assert not check_token("s3cret-token", "")
    assert not check_token("s3cret-token", None)
    assert not check_token("s3cret-token", "s3cret-token-but-longer")
    assert not check_token("s3cret-token", "jeton-secrét")  # non-ASCII must not raise
    assert not check_token("", "")


# --------------------------------------------------------------------------- identity


def test_identity_is_created_private_and_reused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    identity, key = load_or_create_identity(data)
    pem = data / "identity" / "ed25519.pem"
    assert pem.is_file() and mode(pem) == 0o600 and mode(pem.parent) == 0o700
    assert pem.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS8, unencrypted
    raw = base64.b64decode(identity.public_key_b64)
    assert len(raw) == 32
    assert identity.node_id == hashlib.sha256(raw).hexdigest()[:16]
    assert security.node_id_for(raw) == identity.node_id
    again, key2 = load_or_create_identity(data)
    assert again == identity
    assert key2.private_bytes_raw() == key.private_bytes_raw()
    assert identity.to_dict() == {"node_id": identity.node_id, "public_key": identity.public_key_b64}


def test_sign_and_verify(tmp_path: Path) -> None:
    identity, key = load_or_create_identity(tmp_path / "a")
    other, other_key = load_or_create_identity(tmp_path / "b")
    assert identity.node_id != other.node_id
    message = b"vote: job 42 passes, ssim 0.97"
    signature = sign(key, message)
    assert len(signature) == 64
    assert verify(identity.public_key_b64, message, signature)
    assert not verify(identity.public_key_b64, message + b"!", signature)
    assert not verify(other.public_key_b64, message, signature)
    assert not verify(identity.public_key_b64, message, sign(other_key, message))
    assert not verify(identity.public_key_b64, message, signature[:-1])
    assert not verify("not base64 !!", message, signature)
    assert not verify(base64.b64encode(b"short").decode(), message, signature)


def test_damaged_or_foreign_identity_key_is_a_config_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    load_or_create_identity(data)
    pem = data / "identity" / "ed25519.pem"
    pem.write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match=r"ed25519\.pem"):
        load_or_create_identity(data)
    pem.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(ConfigError, match="not an Ed25519 key"):
        load_or_create_identity(data)


# --------------------------------------------------------------------------- bind


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST",
                                  "::ffff:127.0.0.1"])
def test_loopback_needs_no_tls(host: str) -> None:
    check_bind(host, None, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.168.1.20", "10.0.0.1", "example.com", "128.0.0.1"])
def test_other_addresses_need_tls(host: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--tls-cert") as info:
        check_bind(host, None, None)
    assert "TLS" in str(info.value)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("cert")
    with pytest.raises(ConfigError, match="--tls-key"):
        check_bind(host, cert, None)
    with pytest.raises(ConfigError, match=r"key\.pem"):
        check_bind(host, cert, key)  # named but missing
    key.write_text("key")
    check_bind(host, cert, key)
