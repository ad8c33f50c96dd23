"""Typed dependencies: the index and settings the lifespan built, for route signatures."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from app.lifecycle import STARTUP_RETRY_AFTER_S
from index.config import Settings
from index.service import ImageIndex


async def get_index(request: Request) -> ImageIndex:
    index: ImageIndex | None = request.app.state.index
    if index is None:
        failed = request.app.state.startup_error
        detail = f"the service failed to start: {failed}" if failed else "the model is loading; retry shortly"
        raise HTTPException(503, detail, headers={"Retry-After": str(STARTUP_RETRY_AFTER_S)})
    return index


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


IndexDep = Annotated[ImageIndex, Depends(get_index)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
