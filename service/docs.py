"""The human docs page at ``/docs``: the OpenAPI contract rendered as plain HTML on the
server, with no scripts or CDN assets, so it works offline and behind strict firewalls.
"""

from __future__ import annotations

import json
from functools import lru_cache
from html import escape
from pathlib import Path
from typing import Any

import yaml

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
color:#222}
code,pre{font:13px ui-monospace,monospace;background:#f4f4f4;padding:.1rem .3rem}
pre{padding:.6rem;overflow-x:auto}
.op{border:1px solid #ddd;border-radius:6px;margin:1rem 0;padding:.5rem 1rem}
.m{font-weight:bold;text-transform:uppercase;margin-right:.5rem}
table{border-collapse:collapse;margin:.3rem 0}td,th{border:1px solid #ddd;padding:.2rem .5rem;
text-align:left;vertical-align:top}
"""


@lru_cache(maxsize=4)
def openapi_text(path: Path) -> str:
    """Return the contract's YAML text."""
    return path.read_text(encoding="utf-8")


@lru_cache(maxsize=4)
def render_html(path: Path) -> str:
    """Return the contract as one HTML page: operations first, then the schemas."""
    spec = yaml.safe_load(openapi_text(path))
    info = spec["info"]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(info['title'])} "
        f"API</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(info['title'])} API {escape(info['version'])}</h1>",
        f"<p>{escape(info.get('description', ''))}</p>",
        "<p>Machine-readable contract: <a href='/openapi.yaml'>/openapi.yaml</a></p>",
        "<h2>Operations</h2>",
    ]
    for route, item in spec["paths"].items():
        shared = item.get("parameters", [])
        for method, op in item.items():
            if method == "parameters":
                continue
            parts.append(_operation(route, method, op, shared))
    parts.append("<h2>Schemas</h2>")
    for name, schema in spec.get("components", {}).get("schemas", {}).items():
        parts.append(_schema(name, schema))
    parts.append("</body></html>")
    return "\n".join(parts)


def _operation(route: str, method: str, op: dict[str, Any], shared: list[Any]) -> str:
    rows = [
        f"<div class='op' id='{escape(op.get('operationId', ''))}'>",
        f"<h3><span class='m'>{escape(method)}</span><code>{escape(route)}</code> "
        f"— {escape(op.get('summary', ''))}</h3>",
    ]
    if op.get("description"):
        rows.append(f"<p>{escape(op['description'])}</p>")
    params = shared + op.get("parameters", [])
    if params:
        rows.append(
            "<table><tr><th>parameter</th><th>in</th><th>required</th><th>description</th></tr>"
        )
        for p in params:
            rows.append(
                f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}</td>"
                f"<td>{'yes' if p.get('required') else 'no'}</td>"
                f"<td>{escape(p.get('description', ''))}</td></tr>"
            )
        rows.append("</table>")
    body = op.get("requestBody", {}).get("content", {})
    for media, content in body.items():
        props = content.get("schema", {}).get("properties", {})
        fields = ", ".join(f"<code>{escape(k)}</code>" for k in props)
        rows.append(f"<p>Request body <code>{escape(media)}</code>: {fields}</p>")
    rows.append("<table><tr><th>status</th><th>meaning</th><th>body</th></tr>")
    for status, response in op.get("responses", {}).items():
        schemas = [
            c.get("schema", {}).get("$ref", "").rsplit("/", 1)[-1] or media
            for media, c in response.get("content", {}).items()
        ]
        links = ", ".join(f"<a href='#schema-{escape(s)}'>{escape(s)}</a>" for s in schemas if s)
        rows.append(
            f"<tr><td>{escape(str(status))}</td>"
            f"<td>{escape(response.get('description', ''))}</td><td>{links}</td></tr>"
        )
    rows.append("</table></div>")
    return "\n".join(rows)


def _schema(name: str, schema: dict[str, Any]) -> str:
    rows = [f"<h3 id='schema-{escape(name)}'>{escape(name)}</h3>"]
    if schema.get("description"):
        rows.append(f"<pre>{escape(schema['description'])}</pre>")
    props = schema.get("properties", {})
    if props:
        required = set(schema.get("required", []))
        rows.append(
            "<table><tr><th>field</th><th>type</th><th>required</th>"
            "<th>default</th><th>description</th></tr>"
        )
        for field, spec in props.items():
            default = json.dumps(spec["default"]) if "default" in spec else ""
            rows.append(
                f"<tr><td><code>{escape(field)}</code></td><td>{escape(_type(spec))}</td>"
                f"<td>{'yes' if field in required else 'no'}</td><td>{escape(default)}</td>"
                f"<td>{escape(spec.get('description', ''))}</td></tr>"
            )
        rows.append("</table>")
    elif "enum" in schema:
        rows.append(f"<p>One of {escape(', '.join(map(str, schema['enum'])))}</p>")
    return "\n".join(rows)


def _type(spec: dict[str, Any]) -> str:
    if "$ref" in spec:
        return spec["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in spec:
        return " | ".join(_type(s) for s in spec["anyOf"])
    if "enum" in spec:
        return " | ".join(json.dumps(v) for v in spec["enum"])
    if "const" in spec:
        return json.dumps(spec["const"])
    if spec.get("type") == "array":
        return f"list[{_type(spec.get('items', {}))}]"
    return str(spec.get("type", "any"))
