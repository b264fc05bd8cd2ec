"""The tamper-evident audit log: RFC 6962 hashing and proofs, the stored log, tampering, the `optimizer audit` CLI."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from engine.errors import ConfigError, InputError
from engine.service.security import load_or_create_identity
from engine.trust.audit import (
    EMPTY_ROOT,
    LOG_FILE,
    AuditEntry,
    AuditLog,
    AuditLogCorrupt,
    MerkleTree,
    SignedCheckpoint,
    canonical_json,
    leaf_hash,
    mth,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
    verify_proof,
)

ROOT = Path(__file__).resolve().parents[2]

# The test data of the Certificate Transparency reference implementation (RFC 6962 trees of 1..8 leaves).
CT_LEAVES = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43", bytes(range(0x50, 0x58)),
             bytes(range(0x60, 0x70))]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = {  # (leaf index, tree size): audit path
    (0, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (5, 8): ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
}
CT_CONSISTENCY = {  # (old size, new size): proof
    (1, 8): CT_INCLUSION[(0, 8)],
    (6, 8): ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
    (2, 5): ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"],
}


# ---------------------------------------------------------------------------------------------
# RFC 6962 hashing and proofs


def test_hashes_are_domain_separated_and_the_empty_tree_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT == hashlib.sha256(b"").digest() == MerkleTree().root() == mth([])
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    # a leaf whose bytes are two child hashes does not collide with their parent (second preimage)
    assert leaf_hash(a + b) != node_hash(a, b)
    assert mth([b"x"]) == leaf_hash(b"x") != hashlib.sha256(b"x").digest()


def test_certificate_transparency_known_vectors() -> None:
    tree = MerkleTree(CT_LEAVES)
    for n, expected in enumerate(CT_ROOTS, 1):
        assert mth(CT_LEAVES[:n]).hex() == expected
        assert tree.root(n).hex() == expected
        assert MerkleTree(CT_LEAVES[:n]).root().hex() == expected
    for (index, size), path in CT_INCLUSION.items():
        assert [h.hex() for h in tree.inclusion_proof(index, size)] == path
        assert verify_inclusion(leaf_hash(CT_LEAVES[index]), index, size, [bytes.fromhex(h) for h in path],
                                bytes.fromhex(CT_ROOTS[size - 1]))
    for (old, new), proof in CT_CONSISTENCY.items():
        assert [h.hex() for h in tree.consistency_proof(old, new)] == proof
        assert verify_consistency(old, new, bytes.fromhex(CT_ROOTS[old - 1]), bytes.fromhex(CT_ROOTS[new - 1]),
                                  [bytes.fromhex(h) for h in proof])


def test_verifiers_reject_malformed_arguments() -> None:
    tree = MerkleTree(CT_LEAVES)
    root, leaf = tree.root(), leaf_hash(CT_LEAVES[3])
    path = tree.inclusion_proof(3)
    assert verify_inclusion(leaf, 3, 8, path, root)
    assert not verify_inclusion(leaf, 8, 8, path, root)  # index beyond the tree
    assert not verify_inclusion(leaf, -1, 8, path, root)
    assert not verify_inclusion(leaf, 3, 8, [*path, path[0]], root)  # an extra hash
    assert not verify_inclusion(leaf, 3, 8, path[:-1], root)  # a missing one
    assert not verify_inclusion(leaf, 3, 9, path, root)  # wrong size
    assert verify_consistency(0, 8, EMPTY_ROOT, root, [])  # every tree extends the empty one
    assert not verify_consistency(0, 8, leaf, root, [])
    assert verify_consistency(8, 8, root, root, [])
    assert not verify_consistency(8, 8, root, leaf, [])
    assert not verify_consistency(8, 8, root, root, [leaf])
    assert not verify_consistency(9, 8, root, root, [])  # shrinking
    assert not verify_consistency(3, 8, tree.root(3), root, [])  # empty proof for a real extension
    with pytest.raises(InputError):
        tree.inclusion_proof(8)
    with pytest.raises(InputError):
        tree.consistency_proof(9)


@settings(max_examples=60, deadline=None)
@given(leaves=st.lists(st.binary(max_size=12), max_size=70), data=st.data())
def test_every_proof_verifies_and_every_wrong_one_fails(leaves: list[bytes], data: st.DataObject) -> None:
    tree = MerkleTree(leaves)
    n = len(leaves)
    assert tree.root() == mth(leaves) == root_from_leaf_hashes(leaf_hash(x) for x in leaves)
    roots = [mth(leaves[:m]) for m in range(n + 1)]  # brute force, straight from the RFC's definition
    for size in range(1, n + 1):
        assert tree.root(size) == roots[size]
        for index in range(size):
            path = tree.inclusion_proof(index, size)
            assert len(path) <= (size - 1).bit_length()
            assert verify_inclusion(leaf_hash(leaves[index]), index, size, path, roots[size])
    for old in range(n + 1):
        proof = tree.consistency_proof(old, n)
        assert verify_consistency(old, n, roots[old], roots[n], proof)
    if n == 0:
        return
    # wrong leaf, wrong root, wrong position, flipped bit in the path: all fail
    size = data.draw(st.integers(1, n))
    index = data.draw(st.integers(0, size - 1))
    path = tree.inclusion_proof(index, size)
    leaf = leaf_hash(leaves[index])
    assert not verify_inclusion(leaf_hash(leaves[index] + b"!"), index, size, path, roots[size])
    assert not verify_inclusion(leaf, index, size, path, hashlib.sha256(roots[size]).digest())
    if path:
        k = data.draw(st.integers(0, len(path) - 1))
        bad = [*path]
        bad[k] = bytes([bad[k][0] ^ 1]) + bad[k][1:]
        assert not verify_inclusion(leaf, index, size, bad, roots[size])
        other = data.draw(st.integers(0, size - 1))
        if leaves[other] != leaves[index]:
            assert not verify_inclusion(leaf, other, size, path, roots[size])
    old = data.draw(st.integers(1, n))
    new = data.draw(st.integers(old, n))
    proof = tree.consistency_proof(old, new)
    if old < new:
        assert not verify_consistency(old, new, hashlib.sha256(roots[old]).digest(), roots[new], proof)
        assert not verify_consistency(old, new, roots[old], hashlib.sha256(roots[new]).digest(), proof)
        if proof:
            bad = [*proof]
            bad[-1] = hashlib.sha256(bad[-1]).digest()
            assert not verify_consistency(old, new, roots[old], roots[new], bad)


# ---------------------------------------------------------------------------------------------
# the stored log


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def entry(i: int, **extra: object) -> AuditEntry:
    return AuditEntry(event="verdict", scene_id=f"scene-{i}", verification_id=f"ver-{i}", consensus_score=0.75,
                      participating_nodes=("node-a", "node-b", "node-c"), quality_passed=i % 3 != 0,
                      result_hash=hashlib.sha256(str(i).encode()).hexdigest(), details={"i": i, **extra})


def stored(path: Path, sql: str, *params: object) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql, params).fetchall()


def test_entries_are_canonical_json_and_the_tree_matches_an_independent_one(tmp_path: Path,
                                                                            key: Ed25519PrivateKey) -> None:
    log = AuditLog(tmp_path, key, "node-1", durable=False)
    assert log.path == tmp_path / LOG_FILE and log.path.is_file()
    assert log.size == 0 and log.root() == EMPTY_ROOT
    first = log.append(entry(0, note="héllo ✓"))
    assert first == 0
    assert log.append_many([entry(i) for i in range(1, 23)]) == list(range(1, 23))
    assert log.append({"event": "delivered", "scene_id": "scene-x", "hash": "ab" * 32}) == 23
    rows = stored(log.path, "SELECT idx, entry, leaf_hash FROM entries ORDER BY idx")
    assert [r[0] for r in rows] == list(range(24))
    for idx, data, leaf in rows:
        record = json.loads(data)
        assert canonical_json(record) == data  # sorted keys, no whitespace, UTF-8
        assert b" " not in data.replace(b"h\xc3\xa9llo \xe2\x9c\x93", b"")
        assert record["index"] == idx and leaf == leaf_hash(data)
        assert set(record) == {"index", "timestamp", "event", "scene_id", "verification_id", "consensus_score",
                               "participating_nodes", "quality_passed", "hash", "details"}
    assert json.loads(rows[0][1])["details"]["note"] == "héllo ✓"
    assert log.entry(23)["hash"] == "ab" * 32 and log.entry(23)["participating_nodes"] == []
    timestamps = [json.loads(r[1])["timestamp"] for r in rows]
    assert timestamps == sorted(timestamps) and all(t.endswith("Z") for t in timestamps)
    independent = MerkleTree(r[1] for r in rows)
    for size in (1, 5, 16, 17, 24):
        assert log.root(size) == independent.root(size)
    assert log.consistency(5, 24) == independent.consistency_proof(5, 24)
    report = log.verify()
    assert report.ok and report.entries == 24 and report.root == independent.root().hex()


def test_bad_entries_are_refused_and_write_nothing(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    log = AuditLog(tmp_path, key, "node-1", durable=False)
    log.append(entry(0))
    for bad in (AuditEntry(event=""), AuditEntry(event="v", consensus_score=1.5),
                AuditEntry(event="v", consensus_score=float("nan")), AuditEntry(event="v", quality_passed="yes"),
                AuditEntry(event="v", details={"x": float("inf")}), AuditEntry(event="v", details={"x": object()}),
                AuditEntry(event="v", participating_nodes=("a", 3)), AuditEntry(event="v", participating_nodes="ab")):
        with pytest.raises(InputError):
            log.append_many([entry(1), bad])  # all or nothing
    with pytest.raises(InputError, match="unknown audit entry field"):
        log.append({"event": "v", "sceneid": "typo"})
    assert log.size == 1 and log.verify().ok


def test_the_engine_itself_can_only_append(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    log = AuditLog(tmp_path, key, "node-1", durable=False)
    log.append_many([entry(0), entry(1)])  # a subtree hash too
    log.checkpoint()
    with sqlite3.connect(log.path) as conn:
        for sql in ("UPDATE entries SET entry = x'00'", "DELETE FROM entries", "DELETE FROM nodes",
                    "UPDATE checkpoints SET size = 5", "DELETE FROM checkpoints"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(sql)


def test_a_log_opens_only_with_its_own_nodes_key(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    AuditLog(tmp_path, key, "node-1", durable=False).append(entry(0))
    with pytest.raises(ConfigError, match="belongs to node"):
        AuditLog(tmp_path, Ed25519PrivateKey.generate(), "node-1")
    with pytest.raises(ConfigError, match="belongs to node"):
        AuditLog(tmp_path, key, "node-2")
    reader = AuditLog(tmp_path, None, "node-1", public_key=key.public_key())
    assert reader.verify().ok
    with pytest.raises(ConfigError, match="without the node's signing key"):
        reader.append(entry(1))
    stranger = AuditLog(tmp_path, None, "node-1", public_key=Ed25519PrivateKey.generate().public_key())
    assert stranger.verify().first_problem.kind == "key"
    with pytest.raises(InputError, match="no audit log"):
        AuditLog(tmp_path / "elsewhere", None, "node-1", public_key=key.public_key())


def test_prove_checks_its_proof_and_anyone_can_check_it_again(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    log = AuditLog(tmp_path, key, "node-1", durable=False)
    log.append_many([entry(i) for i in range(37)])
    with pytest.raises(InputError, match="no checkpoint"):
        log.prove(0)
    checkpoint = log.checkpoint()
    assert checkpoint.size == 37 and checkpoint.verify(key.public_key())
    assert SignedCheckpoint.from_dict(json.loads(json.dumps(checkpoint.to_dict()))) == checkpoint
    log.append(entry(37))
    with pytest.raises(InputError, match="not covered by the newest checkpoint"):
        log.prove(37)
    for index in (0, 1, 17, 32, 36):
        proof = json.loads(json.dumps(log.prove(index)))
        assert proof["verified"] and proof["tree_size"] == 37 and proof["entry"]["index"] == index
        assert verify_proof(proof, log.public_key_b64)
        assert not verify_proof(proof, Ed25519PrivateKey.generate().public_key())
        forged = json.loads(json.dumps(proof))
        forged["entry"]["quality_passed"] = not forged["entry"]["quality_passed"]
        assert not verify_proof(forged, log.public_key_b64)
        moved = json.loads(json.dumps(proof))
        moved["index"] = (index + 1) % 37
        assert not verify_proof(moved, log.public_key_b64)
    # a damaged subtree hash makes prove refuse rather than hand out a proof that does not verify
    with sqlite3.connect(log.path) as conn:
        conn.execute("DROP TRIGGER nodes_no_update")
        conn.execute("UPDATE nodes SET hash = zeroblob(32) WHERE end_leaf = 32 AND level = 5")
    assert verify_proof(log.prove(3), log.public_key)  # its path does not pass through entries 0..31 as a whole
    with pytest.raises(AuditLogCorrupt, match="does not verify"):
        log.prove(33)


def test_concurrent_appends_from_threads_and_processes(tmp_path: Path) -> None:
    identity, node_key = load_or_create_identity(tmp_path)
    log = AuditLog(tmp_path, node_key, identity.node_id, durable=False)
    go = tmp_path / "go"
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from engine.service.security import load_or_create_identity\n"
        "from engine.trust.audit import AuditLog, AuditEntry\n"
        "identity, key = load_or_create_identity(sys.argv[1])\n"
        "log = AuditLog(sys.argv[1], key, identity.node_id, durable=False)\n"
        "Path(sys.argv[1], 'ready-' + sys.argv[2]).touch()\n"
        "while not Path(sys.argv[1], 'go').exists(): time.sleep(0.005)\n"
        "for i in range(40):\n"
        "    log.append(AuditEntry('verdict', scene_id=f'proc-{sys.argv[2]}-{i}'))\n"
        "    if i % 10 == 0: log.checkpoint()\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(p)], cwd=ROOT) for p in range(3)]
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            while not go.exists():
                time.sleep(0.005)
            for i in range(30):
                log.append(AuditEntry("verdict", scene_id=f"thread-{t}-{i}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready-{p}").exists() for p in range(3)) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()  # everyone starts appending at once
    for t in threads:
        t.join()
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    assert not errors
    assert log.size == 3 * 40 + 4 * 30
    scenes = [e["scene_id"] for e in log.entries()]
    assert len(set(scenes)) == len(scenes) == 240
    for p in range(3):  # each writer's entries in its own order
        mine = [s for s in scenes if s.startswith(f"proc-{p}-")]
        assert mine == [f"proc-{p}-{i}" for i in range(40)]
    log.checkpoint()
    report = log.verify()
    assert report.ok, report.problems
    assert report.checkpoints == 13


# ---------------------------------------------------------------------------------------------
# tampering with the SQLite file directly


def build_log(data: Path) -> AuditLog:
    """14 entries; checkpoints #1, #2, #3 at sizes 5, 9 and 12; the node's identity in ``data``."""
    identity, node_key = load_or_create_identity(data)
    log = AuditLog(data, node_key, identity.node_id, durable=False)
    for i in range(14):
        log.append(entry(i))
        if i + 1 in (5, 9, 12):
            log.checkpoint()
    return log


def raw(log: AuditLog, work: Callable[[sqlite3.Connection], None]) -> None:
    """Edit the database the way an attacker with file access would: triggers dropped, no key."""
    with sqlite3.connect(log.path) as conn:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            conn.execute(f"DROP TRIGGER {name}")
        work(conn)


def edit_json(conn: sqlite3.Connection) -> None:
    data = conn.execute("SELECT entry FROM entries WHERE idx = 6").fetchone()[0]
    conn.execute("UPDATE entries SET entry = ? WHERE idx = 6", (data.replace(b"scene-6", b"scene-X"),))


def edit_json_and_rehash_everything(conn: sqlite3.Connection) -> None:
    """Edit entry 6 and recompute every hash in the file (leaf hashes, receipt roots, subtree hashes)."""
    rows = conn.execute("SELECT idx, entry FROM entries ORDER BY idx").fetchall()
    record = json.loads(rows[6][1])
    record["quality_passed"] = not record["quality_passed"]
    rows[6] = (6, canonical_json(record))
    tree = MerkleTree()
    for idx, data in rows:
        tree.append(data)
        conn.execute("UPDATE entries SET entry = ?, leaf_hash = ?, tree_root = ? WHERE idx = ?",
                     (data, leaf_hash(data), tree.root(), idx))
    conn.execute("DELETE FROM nodes")
    for level in range(1, tree.size.bit_length()):
        for i in range(tree.size >> level):
            conn.execute("INSERT INTO nodes VALUES (?, ?, ?)", ((i + 1) << level, level, tree.perfect(level, i)))


def swap_rows(conn: sqlite3.Connection) -> None:
    a = conn.execute("SELECT entry, leaf_hash, tree_root, signature FROM entries WHERE idx = 2").fetchone()
    b = conn.execute("SELECT entry, leaf_hash, tree_root, signature FROM entries WHERE idx = 10").fetchone()
    conn.execute("UPDATE entries SET entry = ?, leaf_hash = ?, tree_root = ?, signature = ? WHERE idx = 2", b)
    conn.execute("UPDATE entries SET entry = ?, leaf_hash = ?, tree_root = ?, signature = ? WHERE idx = 10", a)


def reorder_indices(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE entries SET idx = -1 WHERE idx = 3")
    conn.execute("UPDATE entries SET idx = 3 WHERE idx = 4")
    conn.execute("UPDATE entries SET idx = 4 WHERE idx = -1")


def forge_signature(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE checkpoints SET signature = ? WHERE seq = 2", (os.urandom(64),))


def replace_root(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE checkpoints SET root = ? WHERE seq = 2", (hashlib.sha256(b"other").digest(),))


def resign_root_with_another_key(conn: sqlite3.Connection) -> None:
    row = conn.execute("SELECT node_id, size, timestamp FROM checkpoints WHERE seq = 2").fetchone()
    fake = SignedCheckpoint(row[0], row[1], hashlib.sha256(b"other").digest(), row[2], b"")
    signature = Ed25519PrivateKey.generate().sign(fake.message())
    conn.execute("UPDATE checkpoints SET root = ?, signature = ? WHERE seq = 2", (fake.root, signature))


TAMPERING = {
    # name: (edit, kind of the first problem, entry index named, checkpoint named)
    "edit an entry's JSON": (edit_json, "leaf-hash", 6, None),
    "edit an entry and recompute every hash": (edit_json_and_rehash_everything, "receipt-signature", 6, None),
    "make an entry non-canonical": (
        lambda c: c.execute("UPDATE entries SET entry = CAST(replace(CAST(entry AS TEXT), ',', ', ') AS BLOB) "
                            "WHERE idx = 8"), "entry-not-canonical", 8, None),
    "entry stored as garbage": (lambda c: c.execute("UPDATE entries SET entry = x'00ff' WHERE idx = 1"),
                                "entry-json", 1, None),
    "change a leaf hash": (lambda c: c.execute("UPDATE entries SET leaf_hash = zeroblob(32) WHERE idx = 4"),
                           "leaf-hash", 4, None),
    "change a receipt root": (lambda c: c.execute("UPDATE entries SET tree_root = zeroblob(32) WHERE idx = 11"),
                              "receipt-root", 11, None),
    "forge a receipt signature": (lambda c: c.execute("UPDATE entries SET signature = randomblob(64) WHERE idx = 13"),
                                  "receipt-signature", 13, None),
    "delete a row": (lambda c: c.execute("DELETE FROM entries WHERE idx = 7"), "missing", 7, None),
    "delete the first row": (lambda c: c.execute("DELETE FROM entries WHERE idx = 0"), "missing", 0, None),
    "swap two rows' contents": (swap_rows, "entry-moved", 2, None),
    "reorder two rows": (reorder_indices, "entry-moved", 3, None),
    "truncate the table": (lambda c: c.execute("DELETE FROM entries"), "missing", 0, 1),
    "drop the last entries after a checkpoint": (lambda c: c.execute("DELETE FROM entries WHERE idx >= 10"),
                                                 "missing", 10, 3),
    "change a stored subtree hash": (lambda c: c.execute("UPDATE nodes SET hash = zeroblob(32) "
                                                         "WHERE end_leaf = 8 AND level = 2"), "subtree", None, None),
    "forge a checkpoint signature": (forge_signature, "checkpoint-signature", None, 2),
    "replace a checkpoint root": (replace_root, "checkpoint-signature", None, 2),
    "re-sign a checkpoint with another key": (resign_root_with_another_key, "checkpoint-signature", None, 2),
    "drop the subtree hashes": (lambda c: c.execute("DROP TABLE nodes"), "schema", None, None),
    "change the table layout": (lambda c: c.execute("ALTER TABLE entries RENAME COLUMN leaf_hash TO h"),
                                "unreadable", None, None),
    "add a checkpoint signed by someone else": (
        lambda c: c.execute("INSERT INTO checkpoints (node_id, size, root, timestamp, signature) SELECT node_id, 14, "
                            "zeroblob(32), timestamp, randomblob(64) FROM checkpoints WHERE seq = 3"),
        "checkpoint-signature", None, 4),
}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, check=False)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("pristine")
    build_log(data).close()
    return data


def copy_of(pristine: Path, tmp_path: Path) -> tuple[Path, AuditLog]:
    data = tmp_path / "node"
    shutil.copytree(pristine, data)
    identity, node_key = load_or_create_identity(data)
    return data, AuditLog(data, None, identity.node_id, public_key=node_key.public_key())


@pytest.mark.parametrize("name", list(TAMPERING))
def test_every_kind_of_tampering_is_detected_and_located(name: str, pristine: Path, tmp_path: Path) -> None:
    edit, kind, index, checkpoint = TAMPERING[name]
    data, log = copy_of(pristine, tmp_path)
    assert log.verify().ok
    raw(log, edit)
    report = log.verify()
    assert not report.ok
    first = report.first_problem
    assert (first.kind, first.index, first.checkpoint) == (kind, index, checkpoint), report.problems
    if index is not None:
        assert str(first).startswith(f"entry {index}:")
    elif checkpoint is not None:
        assert str(first).startswith(f"checkpoint #{checkpoint}:")
    result = run_cli("audit", "verify", "--data", str(data))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("optimizer: error")]
    assert len(errors) == 1 and str(first) in errors[0], result.stderr
    as_json = json.loads(run_cli("audit", "verify", "--data", str(data), "--json").stdout)
    assert not as_json["ok"] and as_json["first_problem"]["kind"] == kind
    assert as_json["first_problem"]["index"] == index


def test_untouched_log_verifies_through_the_cli_and_proofs_print(pristine: Path, tmp_path: Path) -> None:
    data, log = copy_of(pristine, tmp_path)
    result = run_cli("audit", "verify", "--data", str(data))
    assert result.returncode == 0, result.stderr
    assert "intact: 14 entries, 3 checkpoint(s)" in result.stdout
    report = json.loads(run_cli("audit", "verify", "--data", str(data), "--json").stdout)
    assert report["ok"] and report["entries"] == 14 and report["root"] == log.root().hex()
    proof = json.loads(run_cli("audit", "prove", "7", "--data", str(data), "--json").stdout)
    assert proof["index"] == 7 and proof["tree_size"] == 12 and verify_proof(proof, log.public_key_b64)
    text = run_cli("audit", "prove", "7", "--data", str(data))
    assert text.returncode == 0 and proof["root"] in text.stdout and all(h in text.stdout for h in proof["audit_path"])
    uncovered = run_cli("audit", "prove", "13", "--data", str(data))
    assert uncovered.returncode == 2 and "not covered by the newest checkpoint" in uncovered.stderr
    nowhere = run_cli("audit", "verify", "--data", str(tmp_path / "nothing"))
    assert nowhere.returncode == 2 and "no engine node data" in nowhere.stderr
    (data / LOG_FILE).write_bytes(os.urandom(8192))  # not a database at all
    garbage = run_cli("audit", "verify", "--data", str(data))
    assert garbage.returncode == 2 and "not a database" in garbage.stderr and "Traceback" not in garbage.stderr


def test_a_tail_cut_behind_every_stored_checkpoint_is_caught_by_a_checkpoint_kept_elsewhere(
        pristine: Path, tmp_path: Path) -> None:
    data, _ = copy_of(pristine, tmp_path)
    result = run_cli("audit", "checkpoint", "--data", str(data), "--json")
    assert result.returncode == 0, result.stderr
    kept = tmp_path / "published.json"
    kept.write_text(result.stdout)
    identity, node_key = load_or_create_identity(data)
    writer = AuditLog(data, node_key, identity.node_id, durable=False)
    writer.append(entry(14))
    raw(writer, lambda c: (c.execute("DELETE FROM checkpoints WHERE seq = 4"),
                           c.execute("DELETE FROM entries WHERE idx >= 12"),
                           c.execute("DELETE FROM nodes WHERE end_leaf > 12")))
    # what the file alone still shows is a valid, shorter log: that is the limit of any self-kept log
    assert writer.verify().ok
    report = writer.verify(expect=[SignedCheckpoint.from_dict(json.loads(kept.read_text()))])
    assert (report.first_problem.kind, report.first_problem.index) == ("missing", 12)
    cli = run_cli("audit", "verify", "--data", str(data), "--checkpoint", str(kept))
    assert cli.returncode == 2 and "entry 12:" in cli.stderr
    forged = json.loads(kept.read_text())
    forged["size"] = 3
    kept.write_text(json.dumps(forged))
    assert writer.verify(expect=[SignedCheckpoint.from_dict(forged)]).first_problem.kind == "expected-checkpoint"


# ---------------------------------------------------------------------------------------------
# stateful: the log only ever extends


class LogOnlyExtends(RuleBasedStateMachine):
    """Random appends and checkpoints; every earlier checkpoint stays a prefix of the log as it grows."""

    key = Ed25519PrivateKey.generate()

    @initialize()
    def open_log(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="audit-stateful-"))
        self.log = AuditLog(self.dir, self.key, "node-s", durable=False)
        self.model: list[bytes] = []
        self.seen: list[SignedCheckpoint] = []

    @rule(count=st.integers(1, 9), score=st.floats(0, 1))
    def append(self, count: int, score: float) -> None:
        before = self.log.size
        indices = self.log.append_many([AuditEntry("vote", consensus_score=score, details={"n": len(self.model) + k})
                                        for k in range(count)])
        assert indices == list(range(before, before + count))
        self.model += [row[0] for row in stored(self.log.path, "SELECT entry FROM entries WHERE idx >= ? "
                                                                "ORDER BY idx", before)]

    @rule()
    def checkpoint(self) -> None:
        self.seen.append(self.log.checkpoint())

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def prove_an_entry(self, data: st.DataObject) -> None:
        latest = self.log.latest_checkpoint()
        if latest is None or latest.size == 0:
            return
        index = data.draw(st.integers(0, latest.size - 1))
        assert verify_proof(self.log.prove(index), self.log.public_key)

    @invariant()
    def earlier_checkpoints_are_prefixes(self) -> None:
        size = self.log.size
        assert size == len(self.model)
        root = self.log.root()
        assert root == MerkleTree(self.model).root()
        assert self.log.checkpoints() == self.seen
        for cp in self.seen:
            assert cp.size <= size and cp.verify(self.log.public_key)
            assert verify_consistency(cp.size, size, cp.root, root, self.log.consistency(cp.size))
        for a, b in zip(self.seen, self.seen[1:], strict=False):
            assert a.size <= b.size
            assert verify_consistency(a.size, b.size, a.root, b.root, self.log.consistency(a.size, b.size))

    def teardown(self) -> None:
        if hasattr(self, "log"):
            assert self.log.verify().ok
            self.log.close()
            shutil.rmtree(self.dir, ignore_errors=True)


LogOnlyExtends.TestCase.settings = settings(max_examples=15, stateful_step_count=12, deadline=None,
                                            suppress_health_check=[HealthCheck.too_slow])
test_log_only_ever_extends = LogOnlyExtends.TestCase
