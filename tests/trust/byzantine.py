"""Test-only fault injection for verifier peers: imported into a real `optimizer serve` process through
OPTIMIZER_PIPELINE_MODULES, it wraps the real ``PeerVerifier.answer`` so that the node lies.

The behaviour is read at every task from the JSON file named by ``OPTIMIZER_TEST_BEHAVIOUR`` (so one process can
play several roles in turn): ``{"behaviour": NAME, ...}`` with NAME one of

* ``honest``: the real answer;
* ``pass`` / ``fail``: always that verdict, without re-rendering anything;
* ``collude``: the honest verdict flipped (two such peers agree on the wrong verdict);
* ``equivocate``: two signed votes with different verdicts for one verification;
* ``silent``: never answers within the deadline (sleeps ``sleep_s``, default 30);
* ``forge``: a vote signed with a key that is not the node's enrolled key;
* ``replay``: no work of its own; fetches the vote of the peer at ``forward`` (its bearer token is this test's
  shared token) and sends that signed vote again.

Never imported by shipped code.
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engine.trust import verify
from engine.trust.sampling import verifier_seed
from engine.trust.votes import SignedVote, new_vote, sign_vote

_honest_answer = verify.PeerVerifier.answer


def _settings() -> dict[str, Any]:
    path = os.environ.get("OPTIMIZER_TEST_BEHAVIOUR")
    if not path or not Path(path).is_file():
        return {"behaviour": "honest"}
    return json.loads(Path(path).read_text())


def _signed(self: verify.PeerVerifier, task: verify.VerificationTask, verdict: str, metrics: dict[str, Any],
            key: Any = None) -> dict[str, Any]:
    """A vote of this node; signed with ``key`` instead of the node's key when given (a forgery)."""
    seed = verifier_seed(task.verification_id, self.public_key_raw)
    vote = new_vote(task.verification_id, self.identity.node_id, verdict, metrics, seed, task.artifact_hash)
    if key is None:
        return sign_vote(vote, self.private_key).to_dict()
    return SignedVote(vote, base64.b64encode(key.sign(vote.canonical_bytes())).decode("ascii")).to_dict()


def lying_answer(self: verify.PeerVerifier, task: verify.VerificationTask) -> dict[str, Any]:
    settings = _settings()
    behaviour = settings.get("behaviour", "honest")
    fake = {"ssim": 1.0, "psnr_db": 60.0, "mse": 1e-6, "flip": 0.0, "vmaf": 97.0, "lpips": None}
    report: dict[str, Any] = {"behaviour": behaviour}
    if behaviour == "honest":
        return _honest_answer(self, task)
    if behaviour in ("pass", "fail"):
        return {"votes": [_signed(self, task, behaviour, fake)], "report": report}
    if behaviour == "collude":
        honest = self.measure(task)
        wrong = "pass" if honest["verdict"] == "fail" else "fail"
        return {"votes": [_signed(self, task, wrong, honest["metrics"])], "report": report}
    if behaviour == "equivocate":
        return {"votes": [_signed(self, task, "pass", fake), _signed(self, task, "fail", fake)], "report": report}
    if behaviour == "silent":
        time.sleep(float(settings.get("sleep_s", 30)))
        return {"votes": [], "report": report}
    if behaviour == "forge":
        return {"votes": [_signed(self, task, "pass", fake, key=Ed25519PrivateKey.generate())], "report": report}
    if behaviour == "replay":
        from engine.service.security import load_or_create_token

        token, _ = load_or_create_token()
        response = requests.post(f"{settings['forward']}/v1/verify", data=task.encode(), timeout=60,
                                 headers={"Content-Type": "application/msgpack",
                                          "Authorization": f"Bearer {token}"})
        response.raise_for_status()
        return {"votes": response.json()["votes"], "report": report}
    raise ValueError(f"unknown behaviour {behaviour!r}")


verify.PeerVerifier.answer = lying_answer  # type: ignore[method-assign]
