"""What the instance says about itself on its About page: a description, the rules and how
to reach the admin. Kept as InstanceSetting rows, so `fedi admin instance` and the admin
page change them at run time with the same calls; the name stays FEDI_INSTANCE_NAME."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from fedi.errors import ValidationError
from fedi.store.models import InstanceSetting

_DESCRIPTION, _RULES, _CONTACT = "about_description", "about_rules", "about_contact"
MAX_DESCRIPTION = 5000
MAX_RULE = 500
MAX_RULES = 50
MAX_CONTACT = 255


@dataclass(frozen=True)
class InstanceInfo:
    description: str = ""
    rules: tuple[str, ...] = ()
    contact: str = ""


async def _get(session: AsyncSession, key: str) -> str | None:
    row = await session.get(InstanceSetting, key)
    return row.value if row is not None else None


async def _set(session: AsyncSession, key: str, value: str) -> None:
    row = await session.get(InstanceSetting, key)
    if row is None:
        session.add(InstanceSetting(key=key, value=value))
    else:
        row.value = value


async def load(session: AsyncSession) -> InstanceInfo:
    rules = json.loads(await _get(session, _RULES) or "[]")
    return InstanceInfo(
        description=await _get(session, _DESCRIPTION) or "",
        rules=tuple(str(r) for r in rules) if isinstance(rules, list) else (),
        contact=await _get(session, _CONTACT) or "",
    )


def _checked(info: InstanceInfo) -> InstanceInfo:
    description = info.description.strip()
    rules = tuple(r.strip() for r in info.rules if r.strip())
    contact = " ".join(info.contact.split())
    if len(description) > MAX_DESCRIPTION:
        raise ValidationError(f"the description is longer than {MAX_DESCRIPTION} characters")
    if len(rules) > MAX_RULES:
        raise ValidationError(f"at most {MAX_RULES} rules")
    for rule in rules:
        if len(rule) > MAX_RULE:
            raise ValidationError(f"a rule is longer than {MAX_RULE} characters: "
                                  f"{rule[:40]!r}…")
    if len(contact) > MAX_CONTACT:
        raise ValidationError(f"the contact is longer than {MAX_CONTACT} characters")
    return InstanceInfo(description, rules, contact)


async def update(
    session: AsyncSession, *, description: str | None = None,
    rules: tuple[str, ...] | None = None, contact: str | None = None,
) -> InstanceInfo:
    """Change what is given (None: keep); checks everything before writing anything."""
    current = await load(session)
    new = _checked(InstanceInfo(
        description=current.description if description is None else description,
        rules=current.rules if rules is None else rules,
        contact=current.contact if contact is None else contact,
    ))
    await _set(session, _DESCRIPTION, new.description)
    await _set(session, _RULES, json.dumps(list(new.rules)))
    await _set(session, _CONTACT, new.contact)
    return new
