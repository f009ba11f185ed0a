"""The applier's catalog lookups are shared across batches only while the catalog is unchanged."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import delete, false, text
from sqlmodel import Session, col, select

from syncd.models import Plan, TraitDefinition, metadata
from syncd.stripe_emulator import BackgroundServer
from syncd.stripe_sync.apply import apply_pending
from syncd.stripe_sync.catalog_cache import CATALOG_TABLES, catalog_for
from syncd.stripe_sync.mapping import ts

from .harness import World
from .test_apply import NO_REFETCH, T0, put
from .test_batch_edges import subscribed


def test_the_cache_is_kept_until_a_catalog_table_changes(
    emulator: BackgroundServer, postgres_url: str, tmp_path: Path
) -> None:
    world = World(emulator, postgres_url, tmp_path)
    try:
        world.catalog()
        with Session(world.engine) as session:
            first = catalog_for(session)
        with Session(world.engine) as session:
            assert catalog_for(session) is first  # nothing changed: the same lookups
            session.add(TraitDefinition(entity_type="company", name="cache_probe", trait_type="number"))
            session.commit()
        with Session(world.engine) as session:
            inserted = catalog_for(session)
            assert inserted is not first
            row = session.exec(
                select(TraitDefinition).where(col(TraitDefinition.name) == "cache_probe")
            ).one()
            session.delete(row)
            session.commit()
        with Session(world.engine) as session:
            assert catalog_for(session) is not inserted  # a delete changes it too
    finally:
        world.close()


def test_a_product_relinked_between_batches_maps_to_its_new_plan(
    emulator: BackgroundServer, postgres_url: str, tmp_path: Path
) -> None:
    world = World(emulator, postgres_url, tmp_path)
    try:
        ids = world.catalog()
        put(world, subscribed("evt_1", T0, "sub_1", "cus_1", ids["pro"]))
        assert apply_pending(world.engine, None, options=NO_REFETCH, now=ts(T0)).failed == 0
        assert world.company("cus_1").base == "pro"
        with Session(world.engine) as session:  # the catalog now sells that product as Enterprise
            plans = {p.key: p for p in session.exec(select(Plan)).all()}
            plans["pro"].stripe_product_id, plans["enterprise"].stripe_product_id = None, None
            session.add(plans["pro"])
            session.flush()
            plans["enterprise"].stripe_product_id = ids["pro"]
            session.add(plans["enterprise"])
            session.commit()
        put(world, subscribed("evt_2", T0 + 1, "sub_2", "cus_2", ids["pro"]))
        assert apply_pending(world.engine, None, options=NO_REFETCH, now=ts(T0)).failed == 0
        assert world.company("cus_2").base == "enterprise"
    finally:
        world.close()


def test_every_catalog_table_bumps_the_stamp(pg_world: World) -> None:
    """Statement-level triggers: any write to a table the mapping reads, even one that
    matches no row, changes the counter the cache is checked against."""

    def stamp() -> int:
        with pg_world.engine.connect() as conn:
            return int(conn.execute(text("SELECT version FROM catalog_stamp WHERE id = 1")).scalar_one())

    for table in CATALOG_TABLES:
        before = stamp()
        with pg_world.engine.begin() as conn:
            conn.execute(delete(metadata.tables[table]).where(false()))
            assert stamp() == before  # not visible to others before the commit
        assert stamp() == before + 1, table
    with pg_world.engine.begin() as conn:  # a write elsewhere leaves it alone
        before = stamp()
        conn.execute(delete(metadata.tables["company"]).where(false()))
    assert stamp() == before
