"""The trained-models ledger of the store (the digests the model registry trusts), on
every backend."""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest

from planner.errors import StoreError
from planner.history import HistoryStore
from planner.learning.registry import ModelLedger

from .conftest import T0

DIGEST = "ab" * 32
OTHER = "cd" * 32


def test_a_recorded_digest_is_read_back_per_pipeline_and_model(store: HistoryStore) -> None:
    ledger: ModelLedger = store  # the store is what the registry checks models against
    assert ledger.model_digest("etl", "m1") is None
    ledger.record_model("etl", "m1", DIGEST, T0, size=1234, kind="model")
    assert ledger.model_digest("etl", "m1") == DIGEST
    assert ledger.model_digest("etl", "m2") is None
    assert ledger.model_digest("other", "m1") is None
    (row,) = store.trained_models("etl")
    assert (row.pipeline, row.model_id, row.sha256, row.size, row.kind) == (
        "etl",
        "m1",
        DIGEST,
        1234,
        "model",
    )
    assert row.created_at == T0 and row.created_at.tzinfo is not None
    assert row.recorded_at.tzinfo is not None and row.promoted_at is None


def test_a_digest_is_never_replaced(store: HistoryStore) -> None:
    store.record_model("etl", "m1", DIGEST, T0)
    store.record_model("etl", "m1", DIGEST, T0)  # the same again: nothing happens
    with pytest.raises(StoreError) as caught:
        store.record_model("etl", "m1", OTHER, T0)
    assert caught.value.where == store.url
    assert "etl/m1" in caught.value.what and "another digest" in caught.value.what
    assert store.model_digest("etl", "m1") == DIGEST
    assert len(store.trained_models()) == 1


def test_promotion_is_stamped_only_for_recorded_models(store: HistoryStore) -> None:
    store.record_model("etl", "m1", DIGEST, T0)
    later = T0 + timedelta(hours=1)
    assert store.record_promotion("etl", "m1", later.astimezone(timezone(timedelta(hours=2))))
    assert not store.record_promotion("etl", "unknown", later)
    (row,) = store.trained_models()
    assert row.promoted_at == later


def test_listing_is_by_pipeline_then_oldest_first(store: HistoryStore) -> None:
    store.record_model("b", "m9", DIGEST, T0)
    store.record_model("a", "m2", OTHER, T0 + timedelta(seconds=5))
    store.record_model("a", "m1", DIGEST, T0)
    assert [(m.pipeline, m.model_id) for m in store.trained_models()] == [
        ("a", "m1"),
        ("a", "m2"),
        ("b", "m9"),
    ]
    assert [m.model_id for m in store.trained_models("a")] == ["m1", "m2"]
    assert store.trained_models("none") == []
