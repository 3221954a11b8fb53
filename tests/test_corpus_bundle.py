"""The corpus text ships with the kit (a snapshot of CPython 3.11.7's pydoc topics), so its windows
and vocabulary do not change with the Python version that runs it."""
import gzip
import json
import sys
from importlib.resources import files

import pytest

import sslkit
from sslkit.data import corpus


@pytest.fixture
def no_pydoc_data(monkeypatch):
    """Loading must not touch this Python's pydoc_data (None in sys.modules makes imports fail)."""
    monkeypatch.setitem(sys.modules, "pydoc_data", None)
    monkeypatch.setitem(sys.modules, "pydoc_data.topics", None)
    for fn in (corpus.raw_topics, corpus.topic_texts, corpus.tokenizer):
        fn.cache_clear()
    yield
    for fn in (corpus.raw_topics, corpus.topic_texts, corpus.tokenizer):
        fn.cache_clear()


def test_counts_of_notebook_01_without_pydoc_data(no_pydoc_data):
    # notebooks/01_masking.ipynb prints "windows: (1272, 64) | vocabulary: 3284 words"
    train = sslkit.data.load("corpus", split="train")
    assert tuple(train.x.shape) == (1272, 64)
    assert len(train.tokenizer) == 3284
    assert train.tokenizer.decode(train.x[0, :24]).startswith('doubling : " { { " and " } } "')
    assert len(corpus.raw_topics()) == 79 and len(train.meta["factor_values"]["topic"]) == 79
    assert train.meta["skipped_topics"] == sorted(set(corpus.raw_topics()) - set(corpus.TOPIC_GROUPS))


def test_snapshot_is_small_and_licensed():
    blob = files("sslkit.data").joinpath(corpus.TOPICS_FILE).read_bytes()
    assert len(blob) < 256 * 1024
    topics = json.loads(gzip.decompress(blob))
    assert all(isinstance(k, str) and isinstance(v, str) and v for k, v in topics.items())
    licence = files("sslkit.data").joinpath("pydoc_topics.LICENSE.txt").read_text()
    assert "PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2" in licence and "3.11.7" in licence


@pytest.mark.skipif(sys.version_info[:3] != (3, 11, 7), reason="the snapshot is of Python 3.11.7")
def test_snapshot_equals_this_pythons_pydoc_topics():
    from pydoc_data.topics import topics

    assert corpus.raw_topics() == topics
