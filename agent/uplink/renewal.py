"""The running agent keeps its identity valid: it re-enrolls over EST at ``renew_fraction`` of
the certificate's lifetime (a new key each time), installs the new pair safely
(agent/uplink/identity.py), and switches the MQTT connection to it without a restart
(MqttUplink.switch_identity: new publishes wait, the in-flight ones are acknowledged, then one
reconnect). Failures are retried with jittered backoff; an alarm is raised at the first failure
and again when less than a tenth of the lifetime is left.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agent.clock import utcnow
from agent.config import AgentConfig, EstConfig
from agent.uplink import identity
from agent.uplink.est import ClientCert, EstClient, EstError, EstPending
from agent.uplink.security import read_secret

log = logging.getLogger(__name__)

RECHECK_S = 3600.0  # look at the certificate file again at least this often (replaced by hand?)
NEAR_EXPIRY = 0.1  # of the lifetime: the second alarm


@dataclass(slots=True)
class RenewalStatus:
    not_after: datetime | None = None
    renew_at: datetime | None = None
    serial: int | None = None
    renewals: int = 0
    failures: int = 0
    last_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        def iso(t: datetime | None) -> str | None:
            return None if t is None else t.isoformat().replace("+00:00", "Z")

        return {"notAfter": iso(self.not_after), "renewAt": iso(self.renew_at),
                "serial": None if self.serial is None else f"{self.serial:x}",
                "renewals": self.renewals, "failures": self.failures,
                "lastError": self.last_error}


def backoff_s(attempt: int, lo: float, hi: float, rng: random.Random) -> float:
    return rng.uniform(lo, min(hi, lo * 2 ** min(attempt, 30)))


class IdentityRenewal:
    def __init__(
        self,
        cfg: AgentConfig,
        switch: Callable[[], Awaitable[None]],
        alarm: Callable[[dict[str, Any]], Awaitable[None]],
        *,
        now: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        config_file: str = "<config>",
    ) -> None:
        est = cfg.uplink.est
        tls = cfg.uplink.mqtt.tls
        assert est is not None  # the caller runs renewal only with uplink.est
        assert tls.cert is not None  # and the config requires both with est
        assert tls.key is not None
        self.est: EstConfig = est
        self.cert: Path = tls.cert
        self.key: Path = tls.key
        self.password = read_secret(tls.key_password_file, None,
                                    "uplink.mqtt.tls.key_password_file")
        self.site, self.gateway_id = cfg.gateway.site, cfg.gateway.id
        self._switch = switch
        self._alarm = alarm
        self._now = now
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._client = EstClient(est, config_file=config_file)
        self.status = RenewalStatus()

    def _lifetime(self) -> identity.Lifetime:
        lt = identity.lifetime(self.cert.read_bytes())
        self.status.not_after, self.status.serial = lt.not_after, lt.serial
        self.status.renew_at = lt.renew_at(self.est.renew_fraction)
        return lt

    def renew_once(self) -> identity.Lifetime:
        """Blocking: a new key, a CSR, /simplereenroll with the current certificate, install."""
        key = identity.new_key(self.est.key_type)
        csr = identity.make_csr(key, self.site, self.gateway_id)
        current = ClientCert(self.cert, self.key, self.password)
        certs = self._client.enroll(csr, current=current)
        identity.install(self.cert, self.key, identity.certs_pem(certs), identity.key_pem(key))
        return self._lifetime()

    async def run(self) -> None:
        attempt = 0
        alarmed_first = alarmed_near = False
        while True:
            lt = await asyncio.to_thread(self._lifetime)
            now = self._now()
            wait_s = (lt.renew_at(self.est.renew_fraction) - now).total_seconds()
            if wait_s > 0:
                await asyncio.sleep(min(wait_s, RECHECK_S))
                continue
            try:
                new = await asyncio.to_thread(self.renew_once)
            except (EstError, OSError, ValueError) as exc:
                self.status.failures += 1
                self.status.last_error = str(exc)
                left = lt.left(self._now())
                delay = (exc.retry_after_s if isinstance(exc, EstPending)
                         else backoff_s(attempt, self.est.retry_min_s, self.est.retry_max_s,
                                        self._rng))
                # Never sleep past the expiry: the last tries come before it.
                floor_s = min(1.0, self.est.retry_min_s)
                delay = max(floor_s, min(delay, left.total_seconds() / 4))
                attempt += 1
                log.warning("identity: renewal of certificate %x failed (%s); %s left; "
                            "retrying in %.0f s", lt.serial, exc, _span(left), delay)
                near = left <= lt.total * NEAR_EXPIRY
                if not alarmed_first or (near and not alarmed_near):
                    alarmed_first = True
                    alarmed_near = alarmed_near or near
                    await self._alarm({
                        "type": "identity_renewal_failed",
                        "detail": f"renewing the gateway certificate failed: {exc}",
                        "not_after": lt.not_after.isoformat().replace("+00:00", "Z"),
                        "left_s": round(left.total_seconds()),
                    })
                await asyncio.sleep(delay)
                continue
            attempt = 0
            alarmed_first = alarmed_near = False
            self.status.renewals += 1
            self.status.last_error = None
            log.info("identity: certificate renewed: serial %x -> %x, valid until %s", lt.serial,
                     new.serial, new.not_after.isoformat())
            await self._switch()


def _span(left: timedelta) -> str:
    s = left.total_seconds()
    if s < 0:
        return "expired"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"
