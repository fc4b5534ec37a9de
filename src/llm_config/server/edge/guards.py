"""The address guards: `--allow-cidr` / `--deny-cidr`, then bans → 403, before anything else looks at the request."""

from __future__ import annotations

import math
import time

from llm_config import metrics
from llm_config.server.edge.request import EdgeRequest
from llm_config.server.edge.respond import reject
from llm_config.server.security import BanList, IPFilter

__all__ = ["AddressGuard"]


class AddressGuard:
    """Refuses a client address the CIDR lists exclude or a ban holds (SPEC §9)."""

    __slots__ = ("_bans", "_filter")

    def __init__(self, ip_filter: IPFilter, bans: BanList) -> None:
        self._filter = ip_filter
        self._bans = bans

    async def refuse(self, req: EdgeRequest) -> bool:
        """True after answering 403."""
        if self._filter.active and self._filter.refuses(req.ip):
            metrics.IP_REFUSED.labels("cidr").inc()
            return await reject(req, 403, "Client address not allowed")
        ban = self._bans.banned(req.ip)
        if ban is not None:
            metrics.IP_REFUSED.labels("banned").inc()
            wait = str(max(1, math.ceil(ban.expires_at - time.time())))
            return await reject(req, 403, "Too many failed authentications from this address; try again later",
                                {"Retry-After": wait})
        return False
