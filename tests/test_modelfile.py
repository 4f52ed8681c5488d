"""Model files: safetensors + JSON card round trip, validation and clear errors."""

import json

import pytest
import torch

from ml_core.errors import InputError, OutputError
from ml_core.learn.model import UNet
from ml_core.learn.modelfile import ModelCard, card_path, check_bands, load_model, save_model


def _card(net: UNet, **changes) -> ModelCard:
    fields = dict(architecture=net.architecture(), bands=[1, 2, 3], mean=[100.0, 110.0, 120.0],
                  std=[50.0, 51.0, 52.0], gsd_m=0.3)
    fields.update(changes)
    return ModelCard(**fields)


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    net = UNet(3, 2, width=4, depth=2)
    path = save_model(tmp_path / "model", net, _card(net, metrics={"val_dice": 0.7}))
    return net, path


def test_round_trip_keeps_weights_and_card(saved):
    net, path = saved
    assert path.suffix == ".safetensors" and card_path(path).exists()
    loaded = load_model(path)
    for name, tensor in net.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[name], tensor), name
    assert loaded.card.metrics == {"val_dice": 0.7}
    assert loaded.card.mean == [100.0, 110.0, 120.0]
    assert not loaded.net.training
    x = torch.randn(1, 3, 32, 32)
    net.eval()
    assert torch.allclose(loaded.net(x), net(x))


def test_no_partial_files_left(saved):
    _, path = saved
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.json", "model.safetensors"]


def test_corrupt_weights_give_clear_error(saved):
    _, path = saved
    path.write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(InputError, match="corrupt"):
        load_model(path)


def test_pickle_file_is_refused(tmp_path, saved):
    net, path = saved
    torch.save(net.state_dict(), path)  # a pickled checkpoint under the right name
    with pytest.raises(InputError, match=str(path.name)):
        load_model(path)


def test_missing_card_names_the_fix(saved):
    _, path = saved
    card_path(path).unlink()
    with pytest.raises(InputError, match=r"\.json card"):
        load_model(path)


def test_card_mismatching_weights(saved):
    _, path = saved
    data = json.loads(card_path(path).read_text())
    data["architecture"]["width"] = 8
    card_path(path).write_text(json.dumps(data))
    with pytest.raises(InputError, match="does not match"):
        load_model(path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"bands": [1, 2]}, "same non-zero length"),
        ({"std": [1.0, 0.0, 1.0]}, "std must be positive"),
        ({"gsd_m": 0.0}, "gsd_m must be positive"),
        ({"seed_threshold": None}, "seed_threshold must be a number between 0 and 1"),
        ({"gsd_range_m": [0.3]}, r"gsd_range_m must be null or \[smallest, largest\]"),
        ({"gsd_range_m": [1.2, 0.15]}, "gsd_range_m must be null"),
    ],
)
def test_card_validation(changes, message):
    net = UNet(3, 2, width=4, depth=2)
    data = json.loads(_card(net).to_json())
    data.update(changes)
    with pytest.raises(InputError, match=message):
        ModelCard.from_dict(data)


def test_old_cards_with_tile_size_still_read():
    """Cards before 2026-12 stored the training crop as tile_size (never read; removed)."""
    net = UNet(3, 2, width=4, depth=2)
    data = {**json.loads(_card(net).to_json()), "tile_size": 256}
    card = ModelCard.from_dict(data)
    assert card.gsd_m == 0.3 and "tile_size" not in json.loads(card.to_json())


def test_card_missing_fields():
    with pytest.raises(InputError, match="missing architecture"):
        ModelCard.from_dict({"bands": [1], "mean": [0], "std": [1], "gsd_m": 1})


def test_band_check_names_raster():
    net = UNet(3, 2, width=4, depth=2)
    with pytest.raises(InputError, match=r"one\.tif has 1 band"):
        check_bands(_card(net), 1, "one.tif")
    check_bands(_card(net), 4, "four.tif")


def test_unwritable_output(tmp_path):
    net = UNet(3, 2, width=4, depth=2)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="writable folder"):
        save_model(blocker / "sub" / "model", net, _card(net))
