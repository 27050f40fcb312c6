"""Right to erasure: an erasure request to the message that finds the person's lead."""

from __future__ import annotations

import hashlib

from schemas.erasure import ErasureRequest
from schemas.internal import Forget
from streams.construct import trusted
from streams.normalize import DEFAULT_EMAIL_RULES, EmailRules, email_identity

__all__ = ["email_sha256", "forget_of", "user_id_sha256"]


def email_sha256(email: str) -> str:
    """SHA-256 (hex) of the address trimmed and lowercased: the usual "hashed email", so a
    downstream system can find its own copy of the person without Leadstream naming them."""
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()


def user_id_sha256(user_id: str) -> str:
    return hashlib.sha256(user_id.encode("utf-8")).hexdigest()


def forget_of(request: ErasureRequest, *, rules: EmailRules = DEFAULT_EMAIL_RULES) -> Forget:
    """The `Forget` message for a request, addressed to the entry of the identifier it
    names: `email:<identity form>` (the spelling the identity graph keys emails by) or the
    userId as itself."""
    if request.email is not None:
        to = "email:" + email_identity(request.email, rules=rules)
        what, digest = "email", email_sha256(request.email)
    else:
        assert request.user_id is not None  # the model requires one of the two
        to, what, digest = request.user_id, "userId", user_id_sha256(request.user_id)
    return trusted(
        Forget,
        dict(
            to=to,
            request_id=request.request_id,
            identifier=what,
            identifier_sha256=digest,
            reason=request.reason,
            requested_ms=int(request.requested_at.timestamp() * 1000),
        ),
    )
