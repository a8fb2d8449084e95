"""Parameters as Mastodon clients send them: query string, form, multipart or JSON, in one
mapping. Form arrays arrive as `name[]`; JSON arrays and objects as themselves. A bad value
is a 422 that names the parameter."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from fedi.api.errors import ApiError, unprocessable

MAX_BODY = 1024 * 1024
TRUE = {"1", "true", "on", "yes", "t"}
FALSE = {"0", "false", "off", "no", "f", ""}


class Params:
    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def raw(self, name: str) -> Any:
        return self.values.get(name)

    def text(self, name: str, default: str | None = None, *, max_length: int = 100_000
             ) -> str | None:
        value = self.values.get(name)
        if value is None:
            return default
        if isinstance(value, list):
            value = value[-1] if value else None
            if value is None:
                return default
        if isinstance(value, (dict, list)):
            raise unprocessable(f"{name} must be a string", name)
        text = str(value)
        if len(text) > max_length:
            raise unprocessable(f"{name} is longer than {max_length} characters", name)
        return text

    def integer(self, name: str, default: int | None = None, *, low: int | None = None,
            high: int | None = None) -> int | None:
        value = self.values.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise unprocessable(f"{name} must be a whole number", name)
        try:
            number = int(value)
        except ValueError:
            raise unprocessable(f"{name} must be a whole number", name) from None
        if low is not None and number < low:
            number = low
        if high is not None and number > high:
            number = high
        return number

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.values.get(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in TRUE:
            return True
        if text in FALSE:
            return False
        raise unprocessable(f"{name} must be true or false", name)

    def strings(self, name: str) -> list[str]:
        value = self.values.get(name)
        if value is None:
            value = self.values.get(f"{name}[]")
        if value is None:
            return []
        if isinstance(value, dict):  # form arrays as name[0]=a&name[1]=b
            value = [value[k] for k in sorted(value, key=str)]
        if not isinstance(value, list):
            value = [value]
        if any(isinstance(v, (dict, list)) for v in value):
            raise unprocessable(f"{name} must be a list of strings", name)
        return [str(v) for v in value]

    def mapping(self, name: str) -> dict[str, Any]:
        value = self.values.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise unprocessable(f"{name} must be an object", name)
        return value


def _put(values: dict[str, Any], key: str, value: Any) -> None:
    """Form keys `a[]` collect into lists; `a[b]` into objects (one level, as Mastodon's
    clients send `source[privacy]` and `poll[options][]`)."""
    if key.endswith("[]"):
        key = key[:-2]
        if "[" in key and key.endswith("]"):
            outer, inner = key[:-1].split("[", 1)
            values.setdefault(outer, {}).setdefault(inner, []).append(value)
            return
        values.setdefault(key, [])
        if isinstance(values[key], list):
            values[key].append(value)
        return
    if "[" in key and key.endswith("]"):
        outer, inner = key[:-1].split("[", 1)
        nested = values.setdefault(outer, {})
        if isinstance(nested, dict):
            nested[inner] = value
        return
    values[key] = value


async def read_params(request: Request, *, max_body: int = MAX_BODY) -> Params:
    """max_body: larger for the few endpoints that take an upload (an avatar)."""
    values: dict[str, Any] = {}
    for key, value in request.query_params.multi_items():
        _put(values, key, value)
    if request.method in ("GET", "HEAD", "DELETE") and not request.headers.get("content-length"):
        return Params(values)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_body:
        raise ApiError(413, "The request body is too large")
    if kind == "application/json":
        body = await request.body()
        if len(body) > MAX_BODY:
            raise ApiError(413, "The request body is too large")
        if body.strip():
            try:
                data = json.loads(body)
            except ValueError:
                raise ApiError(400, "The request body is not valid JSON") from None
            if not isinstance(data, dict):
                raise ApiError(400, "The request body must be a JSON object")
            for key, value in data.items():
                values[key.removesuffix("[]")] = value
    elif kind in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form(max_files=4, max_fields=1000)
        for key, item in form.multi_items():
            _put(values, key, item)
    return Params(values)
