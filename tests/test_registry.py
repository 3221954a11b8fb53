"""The method registry: every method of the kit is registered, unknown names fail clearly."""
import pytest

import sslkit

ALL = {"simclr", "moco", "byol", "simsiam", "barlow_twins", "vicreg", "dino", "mae", "autoencoder",
       "rotation", "jigsaw", "mlm", "cpc", "next_frame", "swav", "gpt", "word2vec",
       "wav2vec"}


def test_all_methods_registered():
    assert set(sslkit.method_names()) == ALL
    assert len(sslkit.method_names()) == len(ALL)
    descriptions = sslkit.methods.describe()
    assert set(descriptions) == ALL
    assert all(isinstance(d, str) and d for d in descriptions.values())


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError) as err:
        sslkit.create("simclrr")
    message = str(err.value)
    assert "simclrr" in message
    for name in ALL:
        assert repr(name) in message
