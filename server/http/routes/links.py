"""OpenAPI links: which operation takes the name another one just made, renamed or removed.

Clients (and schemathesis' stateful phase) follow them: a registered endpoint is shown, loaded, chatted
with and removed by the name POST /endpoints answered with; a renamed or copied model by its new name;
a removed model is looked up again (and is gone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI


@dataclass(frozen=True)
class Link:
    """From one response of one operation to an operation whose path takes `name` from it."""

    source: tuple[str, str, str]  # path, method, status
    target: tuple[str, str]  # path, method
    name: str  # a runtime expression: where the target's `name` path parameter comes from

    def key(self) -> str:
        path, method = self.target
        return "".join(p.capitalize() for p in (method, *path.replace("{name}", "it").strip("/").split("/")))

    def body(self) -> dict[str, Any]:
        path, method = self.target
        pointer = path.replace("~", "~0").replace("/", "~1")
        return {"operationRef": f"#/paths/{pointer}/{method}", "parameters": {"name": self.name}}


ON_A_NAME = [("/models/{name}", "get"), ("/models/{name}/load", "post"), ("/models/{name}/unload", "post"),
             ("/models/{name}/chat", "post"), ("/v1/models/{name}", "get"), ("/model/switch/{name}", "post")]
ON_A_MODEL = [*ON_A_NAME, ("/models/{name}/rename", "post"), ("/models/{name}/copy", "post"),
              ("/models/{name}", "delete")]
NEW_NAME = "$response.body#/new_name"

LINKS = [
    *(Link(("/endpoints", "post", status), target, "$response.body#/endpoint/name")
      for status in ("201", "200") for target in [*ON_A_NAME, ("/endpoints/{name}", "delete")]),
    *(Link(("/models/{name}/rename", "post", "200"), target, NEW_NAME) for target in ON_A_MODEL),
    *(Link(("/models/{name}/copy", "post", "201"), target, NEW_NAME) for target in ON_A_MODEL),
    Link(("/models/{name}", "delete", "200"), ("/models/{name}", "get"), "$request.path.name"),
    Link(("/endpoints/{name}", "delete", "200"), ("/models/{name}", "get"), "$request.path.name"),
]


def add_links(schema: dict[str, Any], links: list[Link] = LINKS) -> dict[str, Any]:
    """`schema` with `links` in its responses (a link whose operations the schema lacks is left out)."""
    paths = schema.get("paths", {})
    for link in links:
        path, method, status = link.source
        target_path, target_method = link.target
        response = paths.get(path, {}).get(method, {}).get("responses", {}).get(status)
        if response is None or target_method not in paths.get(target_path, {}):
            continue
        response.setdefault("links", {})[link.key()] = link.body()
    return schema


def install_links(app: FastAPI) -> None:
    """Publish LINKS in the app's /openapi.json."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_links(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
