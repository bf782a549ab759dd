"""Web shop clicks for the clickstream flow (`streamlane generate --flow clickstream`).

Visitors arrive at shops of skewed popularity, view a few pages, sometimes add
products to the cart, and about one in five checks out; some come back after more
than the 30-minute session gap, so a visitor can have several sessions.
"""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from streamlane.generator import EventGenerator, GeneratorSettings, format_time

SHOPS = 12
PAGES = ("/", "/new", "/sale", "/search", "/category/a", "/category/b", "/cart", "/help")
PRODUCTS = 200
ACTIVE_VISITORS = 40
RETURN_SHARE = 0.25
RETURN_AFTER = (timedelta(minutes=31), timedelta(hours=2))


@dataclass
class _Visit:
    visitor_id: str
    shop_id: int
    clicks_left: int
    cart: list[str] = field(default_factory=list)


class Generator(EventGenerator):
    """Clicks of overlapping visits; every visit ends with a checkout or by leaving."""

    # Sessions end 30 minutes after their last click: 90 minutes of history let a demo
    # show ended sessions from the start.
    demo_backfill_s = 5400.0
    demo_rate = 20.0

    def __init__(self, settings: GeneratorSettings) -> None:
        super().__init__(settings)
        weights = [1.0 / (rank + 1) for rank in range(SHOPS)]
        self.shop_weights = list(itertools.accumulate(weights))
        self.active: list[_Visit] = []
        self.returning: list[tuple[datetime, str, int]] = []
        self.visitors = 0

    def _visit(self, event_time: datetime) -> _Visit:
        """A visit that clicks next: a new or returning visitor, or one already browsing."""
        rng = self.rng
        due = [r for r in self.returning if r[0] <= event_time]
        if due and rng.random() < 0.5:
            self.returning.remove(due[0])
            visit = _Visit(due[0][1], due[0][2], rng.randint(1, 8))
            self.active.append(visit)
            return visit
        if len(self.active) < ACTIVE_VISITORS and (not self.active or rng.random() < 0.2):
            self.visitors += 1
            shop = rng.choices(range(1, SHOPS + 1), cum_weights=self.shop_weights)[0]
            visit = _Visit(f"v-{self.settings.seed}-{self.visitors}", shop, rng.randint(1, 10))
            self.active.append(visit)
            return visit
        return rng.choice(self.active)

    def event(self, event_time: datetime) -> tuple[bytes, dict[str, Any]]:
        rng = self.rng
        visit = self._visit(event_time)
        visit.clicks_left -= 1
        clicked: dict[str, Any] = {"visitor_id": visit.visitor_id, "shop_id": visit.shop_id}
        if visit.clicks_left <= 0 and visit.cart and rng.random() < 0.6:
            amount = round(sum(rng.uniform(5, 120) for _ in visit.cart), 2)
            clicked |= {"action": "checkout", "page": "/checkout", "product_id": visit.cart[0]}
            clicked["amount"] = amount
        elif rng.random() < 0.2:
            product = f"p-{rng.randint(1, PRODUCTS)}"
            visit.cart.append(product)
            clicked |= {"action": "add_to_cart", "page": f"/product/{product}"}
            clicked["product_id"] = product
        else:
            clicked |= {"action": "page_view", "page": rng.choice(PAGES)}
        if visit.clicks_left <= 0:
            self.active.remove(visit)
            if rng.random() < RETURN_SHARE:
                back = event_time + rng.uniform(*(d.total_seconds() for d in RETURN_AFTER)) * (
                    timedelta(seconds=1)
                )
                self.returning.append((back, visit.visitor_id, visit.shop_id))
        self.n += 1
        event = {
            "specversion": "1.0",
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "source": f"web/shop/{visit.shop_id}",
            "type": "shop.click.v1",
            "time": format_time(event_time, rng),
            "datacontenttype": "application/json",
            "data": clicked,
        }
        return str(visit.shop_id).encode(), event

    def malform(self, event: dict[str, Any]) -> bytes:
        kind = self.rng.randrange(5)
        data = event["data"]
        if kind == 0:
            return json.dumps(event).encode()[: self.rng.randint(5, 60)]  # truncated
        if kind == 1:
            data["shop_id"] = str(data["shop_id"])  # a string where an integer belongs
        elif kind == 2:
            data["action"] = "wishlist"  # not an action this version knows
        elif kind == 3:
            data["shop_id"] = SHOPS + 100  # valid shape, but no such shop: an enrichment miss
        else:
            del event["time"]
        return json.dumps(event).encode()
