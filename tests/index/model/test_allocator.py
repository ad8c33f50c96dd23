"""The C allocator's threshold for large buffers, fixed where it is glibc's."""

from __future__ import annotations

import platform
import sys

import pytest

from index.model.allocator import release_large_buffers


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only"
)
def test_on_glibc_large_buffers_are_handed_back_to_the_system_when_freed() -> None:
    assert release_large_buffers() is True


@pytest.mark.skipif(platform.libc_ver()[0] == "glibc", reason="for C libraries other than glibc")
def test_elsewhere_nothing_is_changed() -> None:
    assert release_large_buffers() is False
