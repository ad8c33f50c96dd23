"""The browser page's session: it trades its API key for an HttpOnly cookie once, so that the images it shows
(`<img src>`, which cannot send headers) are fetched without the key in their URLs."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from app.auth import HEADER_HINT, SESSION_COOKIE, SESSION_MAX_AGE_S, SESSION_PATH, Keys, header_key, session_cookie
from index.config import Scope

router = APIRouter(tags=["session"])


class SessionOut(BaseModel):
    keys_required: bool = Field(description="Whether this server asks for API keys (IMGSIM_API_KEYS)")
    scope: Scope | None = Field(
        description="What this request may do: 'read', 'write', or null without a valid key or session"
    )


def _keys(request: Request) -> Keys:
    keys: Keys = request.app.state.keys
    return keys


def _cookie(response: Response, request: Request, value: str, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


@router.get(SESSION_PATH)
async def get_session(request: Request) -> SessionOut:
    """Whether keys are required, and the scope of the key or session cookie this request carries."""
    keys = _keys(request)
    if not keys.required:
        return SessionOut(keys_required=False, scope="write")
    headers = {k.lower(): v for k, v in request.headers.items()}
    presented = header_key(headers)
    scope = keys.scope_of(presented) if presented else keys.session_scope(session_cookie(headers))
    return SessionOut(keys_required=True, scope=scope)


@router.post(SESSION_PATH)
async def start_session(request: Request, response: Response) -> SessionOut:
    """Trade the key in the header for a session cookie (HttpOnly, SameSite=Strict, 7 days) of the same scope."""
    keys = _keys(request)
    if not keys.required:
        return SessionOut(keys_required=False, scope="write")
    key = header_key({k.lower(): v for k, v in request.headers.items()})
    scope = keys.scope_of(key)
    if key is None or scope is None:
        raise HTTPException(401, f"a session starts from a valid API key: {HEADER_HINT}")
    _cookie(response, request, keys.issue(key), SESSION_MAX_AGE_S)
    return SessionOut(keys_required=True, scope=scope)


@router.delete(SESSION_PATH)
async def end_session(request: Request, response: Response) -> SessionOut:
    """Forget the session: the cookie is cleared and the next request needs a key again."""
    _cookie(response, request, "", 0)
    keys = _keys(request)
    return SessionOut(keys_required=keys.required, scope=None if keys.required else "write")
