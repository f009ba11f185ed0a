"""Products and prices (``/v1/products``, ``/v1/prices``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import StripeAPIError, invalid_param
from ..forms import Params, apply_metadata
from ..listing import LIST_PARAMS, created_filter, paginate
from ..routing import ApiCall, ApiRoute, retrieve
from ..store import JSON

if TYPE_CHECKING:
    from ..emulator import Emulator

__all__ = ["ROUTES", "create_price"]

PRODUCT_FIELDS = (
    "name",
    "description",
    "active",
    "metadata",
    "url",
    "unit_label",
    "statement_descriptor",
    "tax_code",
    "images",
    "marketing_features",
    "shippable",
    "default_price",
)


def _product_fields(product: JSON, p: Params) -> None:
    for key in ("name", "description", "url", "unit_label", "statement_descriptor", "tax_code"):
        if key in p:
            product[key] = p.string(key)
    if "active" in p:
        product["active"] = p.boolean("active", True)
    if "shippable" in p:
        product["shippable"] = p.boolean("shippable")
    if "images" in p:
        product["images"] = p.strings("images")
    if "marketing_features" in p:
        product["marketing_features"] = [
            {"name": f.string("name")} for f in p.objects("marketing_features", ("name",))
        ]
    apply_metadata(product["metadata"], p.metadata(), p.raw("metadata"))


def create_product(emu: Emulator, call: ApiCall) -> JSON:
    p = call.params((*PRODUCT_FIELDS, "id", "type", "default_price_data"))
    name = p.req_string("name")
    ident = p.string("id") or emu.ids.new("prod", 14)
    if emu.store.find(ident) is not None:
        raise StripeAPIError(
            400, f"Product already exists: {ident}", code="resource_already_exists", param="id"
        )
    now = emu.now()
    product: JSON = {
        "id": ident,
        "object": "product",
        "active": True,
        "created": now,
        "default_price": None,
        "description": None,
        "images": [],
        "livemode": False,
        "marketing_features": [],
        "metadata": {},
        "name": name,
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "tax_code": None,
        "type": p.choice("type", ("service", "good"), "service"),
        "unit_label": None,
        "updated": now,
        "url": None,
    }
    _product_fields(product, p)
    emu.store.add(product)
    emu.emit("product.created", product)
    dpd = p.sub(
        "default_price_data", ("currency", "unit_amount", "unit_amount_decimal", "recurring", "metadata")
    )
    if dpd is not None:
        price = create_price(emu, Params({**dpd.data, "product": ident}))
        before = emu.render(product)
        product["default_price"] = price["id"]
        emu.emit_update("product.updated", product, before)
    return emu.render(product)


def update_product(emu: Emulator, call: ApiCall) -> JSON:
    product = emu.store.get("product", call.arg("id"))
    p = call.params(PRODUCT_FIELDS)
    before = emu.render(product)
    _product_fields(product, p)
    if "default_price" in p:
        dp = p.string("default_price")
        if dp is not None:
            price = emu.store.get("price", dp, "default_price")
            if price["product"] != product["id"]:
                raise invalid_param("default_price", "The price does not belong to this product.")
        product["default_price"] = dp
    product["updated"] = emu.now()
    emu.emit_update("product.updated", product, before)
    return emu.render(product)


def delete_product(emu: Emulator, call: ApiCall) -> JSON:
    product = emu.store.get("product", call.arg("id"))
    if any(pr["product"] == product["id"] for pr in emu.store.all("price")):
        raise StripeAPIError(
            400, "This product cannot be deleted because it has one or more user-created prices."
        )
    emu.store.remove(product["id"])
    emu.emit("product.deleted", product)
    return {"id": product["id"], "object": "product", "deleted": True}


def list_products(emu: Emulator, call: ApiCall) -> JSON:
    p = call.params((*LIST_PARAMS, "active", "ids", "shippable", "url"))
    items = emu.store.newest_first("product")
    active = p.boolean("active")
    if active is not None:
        items = [o for o in items if o["active"] == active]
    ids = p.strings("ids")
    if ids:
        items = [o for o in items if o["id"] in ids]
    items = [o for o in items if created_filter(p)(o)]
    return paginate(items, p, "/v1/products", emu.render)


# -- prices -----------------------------------------------------------------------

PRICE_FIELDS = ("active", "metadata", "nickname", "lookup_key", "transfer_lookup_key", "tax_behavior")


def create_price(emu: Emulator, p: Params) -> JSON:
    Params(
        p.data,
        (
            *PRICE_FIELDS,
            "currency",
            "product",
            "product_data",
            "unit_amount",
            "unit_amount_decimal",
            "recurring",
            "billing_scheme",
            "custom_unit_amount",
        ),
    )
    currency = p.req_string("currency").lower()
    product_id = p.string("product")
    pdata = p.sub(
        "product_data", ("name", "metadata", "active", "unit_label", "statement_descriptor", "tax_code")
    )
    if product_id is None and pdata is None:
        raise invalid_param("product", "Missing required param: product.", "parameter_missing")
    if product_id is not None:
        emu.store.get("product", product_id, "product")
    else:
        assert pdata is not None
        product_id = create_product(emu, ApiCall("POST", "/v1/products", {}, pdata.data))["id"]
    if p.choice("billing_scheme", ("per_unit", "tiered"), "per_unit") != "per_unit":
        raise invalid_param("billing_scheme", "The emulator only supports billing_scheme=per_unit.")
    amount = p.integer("unit_amount")
    if amount is None and p.string("unit_amount_decimal") is not None:
        amount = round(float(p.req_string("unit_amount_decimal")))
    if amount is None:
        raise invalid_param("unit_amount", "Missing required param: unit_amount.", "parameter_missing")
    if amount < 0:
        raise invalid_param("unit_amount", "unit_amount must be non-negative")
    recurring: JSON | None = None
    rec = p.sub(
        "recurring",
        ("interval", "interval_count", "usage_type", "meter", "trial_period_days", "aggregate_usage"),
    )
    if rec is not None:
        usage_type = rec.choice("usage_type", ("licensed", "metered"), "licensed")
        meter = rec.string("meter")
        if usage_type == "metered":
            if meter is None:
                raise invalid_param(
                    "recurring[meter]", "Metered prices require a meter.", "parameter_missing"
                )
            emu.store.get("billing.meter", meter, "recurring[meter]")
        recurring = {
            "interval": rec.choice("interval", ("day", "week", "month", "year"))
            or _missing("recurring[interval]"),
            "interval_count": rec.integer("interval_count", 1),
            "meter": meter,
            "trial_period_days": rec.integer("trial_period_days"),
            "usage_type": usage_type,
        }
    lookup_key = p.string("lookup_key")
    _claim_lookup_key(emu, lookup_key, bool(p.boolean("transfer_lookup_key", False)))
    price: JSON = {
        "id": emu.ids.new("price"),
        "object": "price",
        "active": bool(p.boolean("active", True)),
        "billing_scheme": "per_unit",
        "created": emu.now(),
        "currency": currency,
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": lookup_key,
        "metadata": {},
        "nickname": p.string("nickname"),
        "product": product_id,
        "recurring": recurring,
        "tax_behavior": p.choice("tax_behavior", ("inclusive", "exclusive", "unspecified"), "unspecified"),
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring" if recurring else "one_time",
        "unit_amount": amount,
        "unit_amount_decimal": str(amount),
    }
    apply_metadata(price["metadata"], p.metadata(), p.raw("metadata"))
    emu.store.add(price)
    emu.emit("price.created", price)
    return emu.render(price)


def post_price(emu: Emulator, call: ApiCall) -> JSON:
    return create_price(emu, call.params())


def _missing(param: str) -> str:
    raise invalid_param(param, f"Missing required param: {param}.", "parameter_missing")


def _claim_lookup_key(emu: Emulator, key: str | None, transfer: bool, owner: str | None = None) -> None:
    if key is None:
        return
    for other in emu.store.all("price"):
        if other["lookup_key"] == key and other["id"] != owner:
            if not transfer:
                raise invalid_param(
                    "lookup_key",
                    f"A price (`{other['id']}`) already uses that lookup key.",
                )
            before = emu.render(other)
            other["lookup_key"] = None
            emu.emit_update("price.updated", other, before)


def update_price(emu: Emulator, call: ApiCall) -> JSON:
    price = emu.store.get("price", call.arg("id"))
    p = call.params(PRICE_FIELDS)
    before = emu.render(price)
    if "active" in p:
        price["active"] = bool(p.boolean("active", True))
    if "nickname" in p:
        price["nickname"] = p.string("nickname")
    if "tax_behavior" in p:
        price["tax_behavior"] = p.choice("tax_behavior", ("inclusive", "exclusive", "unspecified"))
    if "lookup_key" in p:
        key = p.string("lookup_key")
        _claim_lookup_key(emu, key, bool(p.boolean("transfer_lookup_key", False)), price["id"])
        price["lookup_key"] = key
    apply_metadata(price["metadata"], p.metadata(), p.raw("metadata"))
    emu.emit_update("price.updated", price, before)
    return emu.render(price)


def list_prices(emu: Emulator, call: ApiCall) -> JSON:
    p = call.params((*LIST_PARAMS, "active", "product", "type", "currency", "lookup_keys", "recurring"))
    items = emu.store.newest_first("price")
    active = p.boolean("active")
    if active is not None:
        items = [o for o in items if o["active"] == active]
    for key in ("product", "type", "currency"):
        value = p.string(key)
        if value is not None:
            items = [o for o in items if o[key] == value]
    keys = p.strings("lookup_keys")
    if keys:
        items = [o for o in items if o["lookup_key"] in keys]
    rec = p.sub("recurring", ("interval", "usage_type", "meter"))
    if rec is not None:
        for key in ("interval", "usage_type", "meter"):
            value = rec.string(key)
            if value is not None:
                items = [o for o in items if (o["recurring"] or {}).get(key) == value]
    items = [o for o in items if created_filter(p)(o)]
    return paginate(items, p, "/v1/prices", emu.render)


ROUTES = [
    ApiRoute("POST", "/v1/products", create_product),
    ApiRoute("GET", "/v1/products", list_products),
    ApiRoute("GET", "/v1/products/{id}", retrieve("product")),
    ApiRoute("POST", "/v1/products/{id}", update_product),
    ApiRoute("DELETE", "/v1/products/{id}", delete_product),
    ApiRoute("POST", "/v1/prices", post_price),
    ApiRoute("GET", "/v1/prices", list_prices),
    ApiRoute("GET", "/v1/prices/{id}", retrieve("price")),
    ApiRoute("POST", "/v1/prices/{id}", update_price),
]
