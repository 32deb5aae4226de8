"""SQL helpers that must give the same answer on both engines."""

from datetime import date

from sqlalchemy import Column, Date, Integer, MetaData, Table, insert, select

from bot.db.types import day_number

DAYS = [date(1, 1, 1), date(1970, 1, 1), date(2000, 2, 29), date(2024, 12, 31), date(2026, 1, 31),
        date(9999, 12, 31), None]


def test_day_number_is_the_ordinal_python_gives(engine):
    days = Table("day_number_probe", MetaData(), Column("id", Integer, primary_key=True), Column("day", Date))
    days.create(engine)
    try:
        with engine.begin() as conn:
            conn.execute(insert(days), [{"id": i, "day": d} for i, d in enumerate(DAYS)])
            got = conn.execute(select(days.c.day, day_number(days.c.day)).order_by(days.c.id)).all()
    finally:
        days.drop(engine)
    assert [n for _, n in got] == [None if d is None else d.toordinal() for d in DAYS]
