"""A stateful property test: random sequences of ingest, delete (to the trash), restore, purge, search, restart
and crash-restart against a simple model of what should be stored (content hash -> id, live or in the trash)."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from index.config import Settings
from index.errors import ImageInTrash, UnknownReference
from index.pipeline import ImageSource
from index.service import ImageIndex
from tests.conftest import CountingEmbedder, encode_image

POOL = [encode_image("PNG", (40, 30), seed=7000 + n) for n in range(10)]
SHAS = [hashlib.sha256(data).hexdigest() for data in POOL]


def test_ingest_delete_search_and_restart_keep_the_index_equal_to_a_simple_model(embedder: CountingEmbedder) -> None:

    class IndexMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.dir = Path(tempfile.mkdtemp(prefix="imgsim-stateful-"))
            self.settings = Settings(data_dir=self.dir / "data")
            self.index = ImageIndex(self.settings, embedder)
            self.model: dict[str, int] = {}  # sha256 -> id of what should be live
            self.trash: dict[str, int] = {}  # sha256 -> id of what should be in the trash
            self.deleted: set[int] = set()  # ids deleted for good

        @rule(picks=st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=4))
        def ingest(self, picks: list[int]) -> None:
            results = self.index.ingest([ImageSource(name=f"p{i}.png", data=POOL[i]) for i in picks], strict=True)
            for i, result in zip(picks, results, strict=True):
                sha = SHAS[i]
                if sha in self.trash:  # its bytes take it out of the trash, under its id
                    assert (result.status, result.id) == ("restored", self.trash[sha])
                    self.model[sha] = self.trash.pop(sha)
                elif sha in self.model:
                    assert (result.status, result.id) == ("exists", self.model[sha])
                else:
                    assert result.status in ("added", "exists") and result.id is not None
                    assert result.id not in self.deleted  # ids are never reused
                    self.model[sha] = result.id

        @precondition(lambda self: bool(self.model))
        @rule(data=st.data())
        def delete(self, data: st.DataObject) -> None:
            sha = data.draw(st.sampled_from(sorted(self.model)))
            image_id = self.model.pop(sha)
            assert self.index.delete(image_id).sha256 == sha
            self.trash[sha] = image_id
            assert self.index.get(image_id).trashed_at is not None
            with pytest.raises(ImageInTrash):
                self.index.resolve_ref(sha)

        @precondition(lambda self: bool(self.trash))
        @rule(data=st.data())
        def restore(self, data: st.DataObject) -> None:
            sha = data.draw(st.sampled_from(sorted(self.trash)))
            image_id = self.trash.pop(sha)
            assert self.index.restore(image_id).id == image_id
            self.model[sha] = image_id

        @precondition(lambda self: bool(self.trash))
        @rule(data=st.data())
        def purge(self, data: st.DataObject) -> None:
            sha = data.draw(st.sampled_from(sorted(self.trash)))
            image_id = self.trash.pop(sha)
            assert self.index.purge(image_id).sha256 == sha
            self.deleted.add(image_id)
            with pytest.raises(UnknownReference):
                self.index.get(image_id)

        @precondition(lambda self: bool(self.model))
        @rule(data=st.data())
        def purge_a_live_image(self, data: st.DataObject) -> None:
            image_id = self.model[data.draw(st.sampled_from(sorted(self.model)))]
            with pytest.raises(UnknownReference, match="not in the trash"):
                self.index.purge(image_id)

        @precondition(lambda self: bool(self.model))
        @rule(data=st.data())
        def search(self, data: st.DataObject) -> None:
            sha = data.draw(st.sampled_from(sorted(self.model)))
            _found, hits = self.index.search_by_image(POOL[SHAS.index(sha)], "q.png", k=len(POOL))
            assert hits[0].image.id == self.model[sha]
            assert {h.image.id for h in hits} == set(self.model.values())

        @rule()
        def restart(self) -> None:
            self.index.close()
            self.index = ImageIndex(self.settings, embedder)

        @rule()
        def crash_and_restart(self) -> None:
            # Like kill -9: nothing flushed, the operating system drops the lock.
            self.index.lock.release()
            self.index.store.close()
            self.index = ImageIndex(self.settings, embedder)

        @invariant()
        def stored_equals_the_model(self) -> None:
            total, items = self.index.list_images(0, 1000)
            assert total == len(self.model)
            assert {i.sha256: i.id for i in items} == self.model
            assert np.array_equal(self.index.vectors.ids(), np.array(sorted(self.model.values()), np.int64))
            trashed, in_trash = self.index.list_trash(0, 1000)
            assert trashed == len(self.trash) and {i.sha256: i.id for i in in_trash} == self.trash

        def teardown(self) -> None:
            self.index.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    IndexMachine.TestCase.settings = settings(
        max_examples=6,
        stateful_step_count=10,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    IndexMachine.TestCase().runTest()
