"""Password policy and hashing.

argon2id (RFC 9106): memory-hard, so guessing a leaked hash on GPUs costs memory as well as
time. The encoded hash carries its own parameters, so raising the cost later only means
rehashing at each person's next login (`needs_rehash`).
"""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from fedi.errors import ValidationError

MIN_LENGTH = 10
MAX_LENGTH = 1024


def check_password(password: str, username: str) -> str:
    """The password if the policy allows it, else ValidationError saying why."""
    if len(password) < MIN_LENGTH:
        raise ValidationError(f"the password is too short: use at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise ValidationError(f"the password is too long: use at most {MAX_LENGTH} characters")
    if password.strip().lower() == username.strip().lower():
        raise ValidationError("the password must not be the user name")
    return password


@dataclass(frozen=True)
class Hasher:
    time_cost: int = 3
    memory_kib: int = 65_536
    parallelism: int = 1

    @property
    def _argon2(self) -> PasswordHasher:
        return PasswordHasher(
            time_cost=self.time_cost, memory_cost=self.memory_kib,
            parallelism=self.parallelism, type=Type.ID,
        )

    def hash(self, password: str) -> str:
        return self._argon2.hash(password)

    def verify(self, encoded: str | None, password: str) -> bool:
        if not encoded:
            # Same work as a real check, so timing does not tell which names have a password.
            self._argon2.hash(password)
            return False
        try:
            return self._argon2.verify(encoded, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, encoded: str) -> bool:
        return self._argon2.check_needs_rehash(encoded)
