"""Strict input: a query parameter or form field that a route does not declare, or a repeated part where a
route takes one file, is a 422 instead of being silently ignored.

One app-wide dependency derives what is allowed from each route's own declared parameters, so every JSON API
route (including ones added later) gets the check without listing anything. Routes left out of the OpenAPI
schema (pages, docs) are not checked: a page may carry state in its query string for its script.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel

# Parameters every route accepts without declaring them (none: keys are never taken from the query string).
ALWAYS_ALLOWED_QUERY: frozenset[str] = frozenset()


def _dependants(root: Dependant) -> Iterator[Dependant]:
    stack = [root]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(current.dependencies)


def _is_list(annotation: object) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, set, frozenset):
        return True
    return any(_is_list(arg) for arg in typing.get_args(annotation) if arg is not type(None))


def _error(location: str, name: str, message: str, value: object) -> RequestValidationError:
    error = {"type": "extra_forbidden", "loc": (location, name), "msg": message, "input": value}
    return RequestValidationError([error])


async def reject_unknown_parameters(request: Request) -> None:
    """422 for a query parameter or form field the route does not take, or a single-file field sent twice."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not route.include_in_schema:
        return
    query_names: set[str] = set(ALWAYS_ALLOWED_QUERY)
    body_fields: dict[str, bool] = {}  # form field -> takes several values
    for dependant in _dependants(route.dependant):
        query_names.update(p.alias for p in dependant.query_params)
        for field in dependant.body_params:
            annotation = field.field_info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                # A form model (`Annotated[UploadFiles, File()]`): its fields are the form's fields.
                for name, sub in annotation.model_fields.items():
                    body_fields[sub.alias or name] = _is_list(sub.annotation)
            else:
                body_fields[field.alias] = _is_list(annotation)
    for name in request.query_params:
        if name not in query_names:
            raise _error("query", name, f"unknown query parameter; this route takes {sorted(query_names)}", None)
    content_type = request.headers.get("content-type", "")
    if not body_fields or not content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        return
    form = await request.form()  # already parsed by FastAPI for this route: this is the cached result
    for name in set(form.keys()):
        if name not in body_fields:
            raise _error("body", name, f"unknown form field; this route takes {sorted(body_fields)}", None)
        if not body_fields[name] and len(form.getlist(name)) > 1:
            raise _error("body", name, "this field takes exactly one value, but several were sent", None)
