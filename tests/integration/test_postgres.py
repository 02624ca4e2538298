import pandas as pd
import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.integration


def test_table_round_trips_through_real_postgres(postgres_schema: str) -> None:
    engine = sa.create_engine(postgres_schema)
    frame = pd.DataFrame({"metric": ["rmse", "mae"], "value": [17.5, 13.25]})
    frame.to_sql("roundtrip", engine, index=False)
    back = pd.read_sql("SELECT metric, value FROM roundtrip ORDER BY metric", engine)
    engine.dispose()
    assert back.to_dict("records") == [
        {"metric": "mae", "value": 13.25},
        {"metric": "rmse", "value": 17.5},
    ]
