from sqlalchemy import inspect


def test_migrated_schema_has_every_table(engine):
    names = set(inspect(engine).get_table_names())
    assert {"accounts", "contacts", "usage_daily", "usage_users", "nps_responses", "tickets", "invoices",
            "mrr_history", "touches", "account_team", "health_snapshots", "score_runs"} <= names
