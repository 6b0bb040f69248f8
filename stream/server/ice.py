"""Letting aioice gather 127.0.0.1 host candidates, for tests on a loopback-only machine.

aioice's ``get_host_addresses`` skips 127.0.0.1 and has no option to keep it, and Chromium only
offers loopback candidates with ``--allow-loopback-in-peer-connection``. Without both, a browser
and this server on a machine with only a loopback interface never connect. Production servers
leave this off: a loopback candidate is useless to a remote browser.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import aioice.ice

logger = logging.getLogger(__name__)

LOOPBACK_IPV4 = "127.0.0.1"

_lock = threading.Lock()
_users = 0
_original: Callable[[bool, bool], list[str]] | None = None


def _with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    assert _original is not None  # only installed by enable_loopback_candidates
    addresses = _original(use_ipv4, use_ipv6)
    if use_ipv4 and LOOPBACK_IPV4 not in addresses:
        addresses.append(LOOPBACK_IPV4)
    return addresses


def enable_loopback_candidates() -> None:
    """Make every ICE agent in this process also gather 127.0.0.1 until the matching disable.

    Reference counted, so several servers in one process (tests) can enable and disable it.
    """
    global _users, _original
    with _lock:
        if _users == 0:
            _original = aioice.ice.get_host_addresses
            aioice.ice.get_host_addresses = _with_loopback
            logger.warning("ICE gathers 127.0.0.1 candidates (test option --allow-loopback-ice)")
        _users += 1


def disable_loopback_candidates() -> None:
    """Undo one ``enable_loopback_candidates``; the last one restores aioice."""
    global _users, _original
    with _lock:
        if _users == 0:
            raise RuntimeError("disable_loopback_candidates called more often than enable")
        _users -= 1
        if _users == 0 and _original is not None:
            aioice.ice.get_host_addresses = _original  # type: ignore[assignment]
            _original = None


def loopback_candidates_enabled() -> bool:
    with _lock:
        return _users > 0
