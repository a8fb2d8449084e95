"""/admin/federation: domain blocks, federation mode and allowlist; the Mastodon-CSV
blocklist upload → preview → apply → undo, and export. The same moderation.blocks and
moderation.imports calls `fedi admin domain-block …` makes."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fedi.admin.acting import Admin
from fedi.errors import ValidationError
from fedi.moderation import blocks, imports
from fedi.moderation.blocklist_csv import CsvBlock, format_blocklist, parse_blocklist
from fedi.moderation.blocks import BlockSettings
from fedi.moderation.policy import get_mode
from fedi.privacy.domains import MODES
from fedi.store.models import now
from fedi.web.admin_common import admin_form, admin_page, checkbox, context, text
from fedi.web.auth import checked_form, render, services_of
from fedi.web.params import non_negative

BACK = "/admin/federation"
MAX_CSV_BYTES = 2 * 1024 * 1024
MAX_DAYS = 36500


@admin_page
async def overview(request: Request, admin: Admin) -> Response:
    async with services_of(request).sessionmaker() as session:
        found = await blocks.list_blocks(session)
        allows = await blocks.list_allows(session)
        mode = await get_mode(session)
    return await render(request, "admin_federation.html", context(
        admin, "federation", blocks=found, allows=allows, mode=mode, modes=MODES))


def _expiry(form: FormData) -> float | None:
    raw = text(form, "expires_in_days")
    if not raw:
        return None
    days = non_negative(raw, MAX_DAYS)
    if days is None or days == 0:
        raise ValidationError(f"the expiry is a whole number of days from 1 to {MAX_DAYS}")
    return now() + days * 86400


async def _block(request: Request, form: FormData, session: AsyncSession,
                 admin: Admin) -> tuple[str, str]:
    settings = BlockSettings(
        severity=text(form, "severity"), reject_media=checkbox(form, "reject_media"),
        reject_reports=checkbox(form, "reject_reports"),
        public_comment=text(form, "reason") or None,
        private_comment=text(form, "private_reason") or None, expires_at=_expiry(form))
    if settings.severity not in ("suspend", "silence", "noop"):
        raise ValidationError("choose a severity: suspend, silence or noop")
    result = await blocks.add_block(session, text(form, "domain"), settings, who=admin.who,
                                    own_domain=services_of(request).settings.domain)
    line = f"{'Blocked' if result.created else 'Changed the block of'} {result.domain} " \
           f"({settings.severity})."
    if result.severed is not None:
        s = result.severed
        line += (f" Severed {s.memberships} membership(s) and {s.follows} follow(s), dropped "
                 f"{s.deliveries} queued deliveries, removed {s.posts} post(s).")
    return line, BACK


async def _unblock(request: Request, form: FormData, session: AsyncSession,
                   admin: Admin) -> tuple[str, str]:
    removed = await blocks.remove_block(session, text(form, "domain"), who=admin.who)
    return f"Unblocked {removed.domain}.", BACK


async def _mode(request: Request, form: FormData, session: AsyncSession,
                admin: Admin) -> tuple[str, str]:
    mode = text(form, "mode")
    allowed = await blocks.set_federation_mode(session, mode, who=admin.who)
    warning = (" The allowlist is empty: no other server can talk to this one."
               if mode == "allowlist" and allowed == 0 else "")
    return f"Federation mode: {mode}.{warning}", BACK


async def _allow(request: Request, form: FormData, session: AsyncSession,
                 admin: Admin) -> tuple[str, str]:
    domain = text(form, "domain")
    created = await blocks.allow(session, domain, who=admin.who)
    return f"{domain} {'allowed' if created else 'was already allowed'}.", BACK


async def _disallow(request: Request, form: FormData, session: AsyncSession,
                    admin: Admin) -> tuple[str, str]:
    domain = text(form, "domain")
    await blocks.disallow(session, domain, who=admin.who)
    return f"{domain} is off the allowlist.", BACK


@admin_page
async def export(request: Request, admin: Admin) -> Response:
    async with services_of(request).sessionmaker() as session:
        rows = [CsvBlock(0, b.domain, b.severity, b.reject_media, b.reject_reports,  # type: ignore[arg-type]
                         b.public_comment, b.obfuscate)
                for b in await blocks.list_blocks(session)]
    return Response(format_blocklist(rows), media_type="text/csv; charset=utf-8", headers={
        "content-disposition": 'attachment; filename="domain_blocks.csv"'})


@admin_page
async def import_page(request: Request, admin: Admin) -> Response:
    return await render(request, "admin_import.html", context(admin, "import", preview=None))


async def _csv_text(form: FormData) -> str:
    upload = form.get("file")
    if isinstance(upload, UploadFile) and upload.filename:
        raw = await upload.read()
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ValidationError("the file is not UTF-8 text") from None
    return text(form, "csv")


@admin_page
async def preview(request: Request, admin: Admin) -> Response:
    """Upload (or pasted text) → what applying it would do; nothing is written."""
    form = await checked_form(request, MAX_CSV_BYTES)
    if isinstance(form, Response):
        return form
    try:
        csv_text = await _csv_text(form)
        if not csv_text.strip():
            raise ValidationError("choose a CSV file (or paste its text)")
        rows = parse_blocklist(csv_text)
        async with services_of(request).sessionmaker() as session:
            planned = await imports.preview(session, rows,
                                            own_domain=services_of(request).settings.domain)
    except ValidationError as exc:
        return await render(request, "admin_import.html", context(
            admin, "import", preview=None, error=str(exc)), status=400)
    return await render(request, "admin_import.html", context(
        admin, "import", preview=planned, csv_text=csv_text))


async def _apply(request: Request, form: FormData, session: AsyncSession,
                 admin: Admin) -> tuple[str, str]:
    rows = parse_blocklist(text(form, "csv"))
    applied = await imports.apply_import(session, rows, who=admin.who, source="admin page",
                                         own_domain=services_of(request).settings.domain)
    p, s = applied.preview, applied.severed
    return (f"Import {applied.record.id} applied: {p.count('new')} new, {p.count('changed')} "
            f"changed, {p.count('unchanged')} unchanged; severed {s.memberships} "
            f"membership(s) and {s.follows} follow(s). You can undo it on the import page."
            ), "/admin/federation/import"


async def _undo(request: Request, form: FormData, session: AsyncSession,
                admin: Admin) -> tuple[str, str]:
    undone = await imports.undo_import(session, who=admin.who)
    skipped = (f" Left as they are (changed after the import): {', '.join(undone.skipped)}."
               if undone.skipped else "")
    return (f"Import {undone.record.id} undone: restored {len(undone.restored)} domain(s). "
            f"Severed follows are not restored.{skipped}"), BACK


routes = [
    Route("/admin/federation", overview),
    Route("/admin/federation/blocks", admin_form(_block), methods=["POST"]),
    Route("/admin/federation/blocks/remove", admin_form(_unblock), methods=["POST"]),
    Route("/admin/federation/mode", admin_form(_mode), methods=["POST"]),
    Route("/admin/federation/allow", admin_form(_allow), methods=["POST"]),
    Route("/admin/federation/disallow", admin_form(_disallow), methods=["POST"]),
    Route("/admin/federation/export.csv", export),
    Route("/admin/federation/import", import_page),
    Route("/admin/federation/import/preview", preview, methods=["POST"]),
    Route("/admin/federation/import/apply", admin_form(_apply, MAX_CSV_BYTES),
          methods=["POST"]),
    Route("/admin/federation/import/undo", admin_form(_undo), methods=["POST"]),
]
