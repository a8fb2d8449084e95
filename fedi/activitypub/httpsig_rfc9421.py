"""RFC 9421 HTTP Message Signatures (`Signature-Input` + `Signature`), as Fedify sends them."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qsl, quote, urlsplit

from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from fedi.activitypub.httpsig_common import (
    ED25519,
    RSA_PSS_SHA512,
    RSA_V1_5_SHA256,
    SignatureParams,
    header_value,
    key_kind,
    lower_headers,
    path_and_query,
    request_authority,
    request_host,
    sign_bytes,
)
from fedi.activitypub.httpsig_sfv import (
    BareItem,
    InnerList,
    Item,
    StructuredFieldError,
    Token,
    parse_dictionary,
    serialize_inner_list,
    serialize_item,
)
from fedi.errors import SignatureError

_KEY_KIND_OF = {RSA_V1_5_SHA256: "RSA", RSA_PSS_SHA512: "RSA", ED25519: "Ed25519"}


def parse(signature_input: str, signature: str) -> SignatureParams:
    """Parse the first Signature-Input label that has a matching Signature member."""
    try:
        inputs = parse_dictionary(signature_input)
        signatures = parse_dictionary(signature)
    except StructuredFieldError as exc:
        raise SignatureError(f"Signature-Input or Signature is malformed: {exc}") from exc
    for label, member in inputs.items():
        signed = signatures.get(label)
        if signed is None:
            continue
        if not isinstance(member.value, InnerList):
            raise SignatureError(f"Signature-Input {label} is not an inner list")
        if not isinstance(signed.value, Item) or not isinstance(signed.value.value, bytes):
            raise SignatureError(f"Signature {label} is not a byte sequence")
        return _params(label, member.value, member.raw, signed.value.value)
    raise SignatureError("no Signature member matches a Signature-Input label")


def _params(label: str, inner: InnerList, raw: str, signature: bytes) -> SignatureParams:
    components: list[Item] = []
    seen: set[str] = set()
    for item in inner.items:
        name = item.value
        if not isinstance(name, str) or isinstance(name, Token) or name != name.lower():
            raise SignatureError(f"Signature-Input {label} has an invalid component {name!r}")
        identifier = serialize_item(item)
        if identifier in seen:
            raise SignatureError(f"Signature-Input {label} covers {identifier} twice")
        seen.add(identifier)
        components.append(item)
    key_id = _string_param(inner.params, "keyid")
    if not key_id:
        raise SignatureError("the signature has no keyid parameter")
    if not signature:
        raise SignatureError("the signature value is empty")
    return SignatureParams(
        scheme="rfc9421",
        key_id=key_id,
        algorithm=_string_param(inner.params, "alg"),
        covered=tuple(str(item.value) for item in components),
        created=_int_param(inner.params, "created"),
        expires=_int_param(inner.params, "expires"),
        signature=signature,
        label=label,
        signature_params=raw,
        components=tuple(components),
    )


def _string_param(params: Mapping[str, BareItem], name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or isinstance(value, Token):
        raise SignatureError(f"the signature's {name} parameter is not a string")
    return value


def _int_param(params: Mapping[str, BareItem], name: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise SignatureError(f"the signature's {name} parameter is not an integer")
    return value


def signature_base(
    method: str,
    url: str,
    headers: Mapping[str, str],
    components: Sequence[Item],
    signature_params: str,
) -> str:
    """RFC 9421 §2.5; `signature_params` is the serialized inner list with its parameters."""
    lowered = lower_headers(headers)
    lines = [
        f"{serialize_item(item)}: {_component_value(item, method, url, lowered)}"
        for item in components
    ]
    lines.append(f'"@signature-params": {signature_params}')
    return "\n".join(lines)


def _component_value(item: Item, method: str, url: str, headers: Mapping[str, str]) -> str:
    name = str(item.value)
    allowed = {"name"} if name == "@query-param" else set()
    unsupported = set(item.params) - allowed
    if unsupported:
        raise SignatureError(f"unsupported parameter {sorted(unsupported)[0]} on component {name}")
    path, query = path_and_query(url)
    if name == "@method":
        return method.upper()
    if name == "@target-uri":
        return url
    if name == "@authority":
        return request_authority(url, headers)
    if name == "@scheme":
        return urlsplit(url).scheme.lower()
    if name == "@request-target":
        return f"{path}?{query}" if query else path
    if name == "@path":
        return path
    if name == "@query":
        return f"?{query}"
    if name == "@query-param":
        return _query_param(query, item.params.get("name"))
    if name.startswith("@"):
        raise SignatureError(f"unsupported derived component {name}")
    if name == "host":
        return request_host(url, headers)
    return header_value(headers, name)


def _query_param(query: str, wanted: BareItem | None) -> str:
    if not isinstance(wanted, str):
        raise SignatureError("@query-param needs a string name parameter")
    values = [value for key, value in parse_qsl(query, keep_blank_values=True) if key == wanted]
    if len(values) != 1:
        raise SignatureError(f"the query parameter {wanted} must appear exactly once")
    return quote(values[0], safe="")


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    components: Sequence[str | Item],
    private_key: PrivateKeyTypes,
    key_id: str,
    *,
    created: int | None,
    expires: int | None = None,
    alg: str | None = None,
    include_alg: bool = True,
    label: str = "sig1",
    nonce: str | None = None,
    tag: str | None = None,
) -> tuple[str, str]:
    """Return (Signature-Input, Signature) header values.

    `alg` is the name sent, by default the key's (rsa-v1_5-sha256 or ed25519). A name that fits
    the key (e.g. rsa-pss-sha512 for RSA) selects that primitive; any other name is sent as-is
    over the key's default, which tests use to forge mislabelled signatures. `include_alg=False`
    leaves the parameter out, as RFC 9421's own examples do.
    """
    kind = key_kind(private_key)
    default = RSA_V1_5_SHA256 if kind == "RSA" else ED25519
    name = alg or default
    primitive = name if _KEY_KIND_OF.get(name) == kind else default
    params: dict[str, BareItem] = {}
    if created is not None:
        params["created"] = created
    if expires is not None:
        params["expires"] = expires
    params["keyid"] = key_id
    if include_alg:
        params["alg"] = name
    if nonce is not None:
        params["nonce"] = nonce
    if tag is not None:
        params["tag"] = tag
    items = tuple(c if isinstance(c, Item) else Item(c) for c in components)
    serialized = serialize_inner_list(InnerList(items, params))
    base = signature_base(method, url, headers, items, serialized)
    signature = sign_bytes(private_key, primitive, base.encode("utf-8"))
    encoded = base64.b64encode(signature).decode("ascii")
    return f"{label}={serialized}", f"{label}=:{encoded}:"
