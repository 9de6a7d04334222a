"""The library API end to end: Cropper.crop on paths and PIL images, one backbone pass, exact ratios."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from s2ccrop import ConfigError, Crop, Cropper
from s2ccrop.api import resolve_device
from s2ccrop.model import S2CNet, S2CNetConfig, save_checkpoint

from conftest import photo_image


@pytest.fixture(scope="module")
def cropper():
    return Cropper(weights="random", device="cpu")


RATIOS = ["16:9", "4:3", "1:1", "9:16", "1.91:1", "4:5", "21:9", "any"]


def test_crop_all_ratios_inside_and_exact(cropper):
    img = photo_image(kind="noise")
    crops = cropper.crop(img, RATIOS)
    assert [c.ratio for c in crops] == RATIOS
    for c in crops:
        assert isinstance(c, Crop) and isinstance(c.score, float)
        x1, y1, x2, y2 = c.box
        assert all(isinstance(v, int) for v in c.box)
        assert 0 <= x1 < x2 <= 320 and 0 <= y1 < y2 <= 240
        if c.ratio != "any":
            w, h = (float(v) for v in c.ratio.split(":"))
            assert abs(c.width - c.height * w / h) <= 1.0 or abs(c.height - c.width * h / w) <= 1.0


def test_single_ratio_string_and_normalisation(cropper):
    crops = cropper.crop(photo_image(kind="noise"), "16x9")
    assert len(crops) == 1 and crops[0].ratio == "16:9"


def test_path_input_is_exif_transposed(cropper, make_photo):
    # a 320x240 stored image with orientation 6 (rotate 90° CW) is a 240x320 upright photo
    path = make_photo("rot.jpg", kind="noise", orientation=6)
    crops = cropper.crop(path, ["any", "1:1"])
    for c in crops:
        assert c.box[2] <= 240 and c.box[3] <= 320


def test_one_backbone_pass_for_all_ratios(cropper, monkeypatch):
    calls = []
    original = cropper.model.features_and_genes

    def counting(x, genes=True):
        calls.append(x.shape)
        return original(x, genes)

    monkeypatch.setattr(cropper.model, "features_and_genes", counting)
    cropper.crop(photo_image(kind="noise"), RATIOS)
    assert len(calls) == 1


def test_deterministic(cropper):
    img = photo_image(seed=3, kind="noise")
    assert cropper.crop(img, RATIOS) == cropper.crop(img, RATIOS)


def test_best_box_is_argmax_of_scores(cropper):
    img = photo_image(seed=5, kind="noise")
    p = cropper.prepare(img)
    from s2ccrop import candidates
    from s2ccrop.types import Ratio

    boxes = candidates.for_ratio(320, 240, Ratio.parse("1:1"), p.model_size)
    scores = cropper.score(p, boxes)
    best = cropper.crop(img, ["1:1"])[0]
    assert best.box == tuple(int(v) for v in boxes[int(np.argmax(scores))])
    assert best.score == pytest.approx(float(scores.max()), abs=1e-5)


def test_checkpoint_path_weights(tmp_path):
    torch.manual_seed(0)
    model = S2CNet(S2CNetConfig(align_size=9, num_boxes=4)).eval()
    save_checkpoint(model, tmp_path / "m.safetensors", half=False)
    c = Cropper(weights=tmp_path / "m.safetensors", device="cpu")
    assert c.config.num_boxes == 4
    assert c.info()["sha256"]
    direct = Cropper(weights=model, device="cpu")
    img = photo_image(seed=7, kind="noise")
    assert c.crop(img, ["4:3"]) == direct.crop(img, ["4:3"])


def test_errors(cropper):
    with pytest.raises(ConfigError):
        cropper.crop(photo_image(kind="noise"), ["16:0"])
    with pytest.raises(ConfigError):
        cropper.crop(photo_image(kind="noise"), [])
    with pytest.raises(ConfigError):
        resolve_device("tpu")


def test_tiny_and_extreme_images(cropper):
    for size in [(1, 1), (3000, 4), (4, 3000), (33, 17)]:
        img = Image.new("RGB", size, (10, 200, 30))
        for c in cropper.crop(img, ["16:9", "1:1", "any"]):
            assert 0 <= c.box[0] < c.box[2] <= size[0] and 0 <= c.box[1] < c.box[3] <= size[1]


def test_default_weights_are_the_shipped_trained_model():
    c = Cropper(device="cpu")
    assert c.info()["weights"] == "s2ccrop-v5" and c.info()["source"] == "embedded"
    assert c.config.num_boxes == 4 and c.config.head == "crop"
    assert c.selection == "average" and c.config.free_form_grid == "full"
    assert (c.config.node_dim, c.config.mlp_dim) == (64, 256)  # s2ccrop-v5.toml
    assert c.config.box_refiner and c.config.refine_ratio_given == "size"
    assert c.model.int8_calibration is not None  # calibrated for the int8 backbone


def test_broken_default_is_an_error_not_an_untrained_model(tmp_path, monkeypatch):
    import json

    from s2ccrop import WeightsError
    from s2ccrop import weights as W

    shipped = json.loads((W.embedded_dir() / W.MANIFEST_NAME).read_text())
    (tmp_path / W.MANIFEST_NAME).write_text(json.dumps(shipped))  # manifest without its checkpoint
    monkeypatch.setattr(W, "embedded_dir", lambda: tmp_path)
    monkeypatch.setenv(W.ENV_CACHE, str(tmp_path / "cache"))
    with pytest.raises(WeightsError):
        Cropper(device="cpu")


def test_a_model_trained_on_the_full_grid_chooses_among_it():
    from s2ccrop import candidates
    from s2ccrop.types import Ratio

    torch.manual_seed(0)
    full = Cropper(weights=S2CNet(S2CNetConfig(align_size=9, num_boxes=4, free_form_grid="full")).eval(), device="cpu")
    img = photo_image(seed=6, kind="noise")
    p = full.prepare(img)
    boxes = full.candidates(p, [Ratio.parse("any")])[0]
    assert np.array_equal(boxes, candidates.free_form(320, 240, p.model_size, "full"))
    assert len(boxes) > len(candidates.free_form(320, 240, p.model_size))
    scores = full.score(p, boxes)
    assert full.crop(img, ["any"])[0].box == tuple(int(v) for v in boxes[int(np.argmax(scores))])
    with pytest.raises(ValueError, match="free_form_grid"):
        S2CNetConfig(free_form_grid="dense")


def test_averaged_selection_is_the_snapped_weighted_mean_and_scores_its_own_box():
    from s2ccrop import candidates
    from s2ccrop.select import average_box
    from s2ccrop.types import Ratio

    torch.manual_seed(1)
    model = S2CNet(S2CNetConfig(align_size=9, num_boxes=4)).eval()
    best, avg = Cropper(weights=model, device="cpu"), Cropper(weights=model, device="cpu", selection="average")
    assert (best.info()["selection"], avg.info()["selection"]) == ("best", "average")
    img = photo_image(seed=7, kind="noise")
    p = avg.prepare(img)
    for ratio in ("any", "4:5", "16:9"):
        r = Ratio.parse(ratio)
        boxes = avg.candidates(p, [r])[0]
        expect = candidates.snap(average_box(boxes, avg.score(p, boxes)), r, 320, 240)
        crop = avg.crop(img, [ratio])[0]
        assert crop.box == expect
        assert crop.score == pytest.approx(float(avg.score(p, np.array([expect], dtype=float))[0]), abs=1e-5)
        if not r.is_any:
            assert abs(crop.width - crop.height * r.value) <= 1.0
    with pytest.raises(ConfigError, match="selection"):
        Cropper(weights=model, device="cpu", selection="median")


def test_snap_keeps_the_ratio_the_centre_and_the_image():
    from s2ccrop.candidates import snap
    from s2ccrop.types import Ratio

    assert snap([10.4, 20.6, 110.2, 120.5], Ratio.parse("any"), 320, 240) == (10, 21, 110, 120)
    assert snap([-3, -3, 400, 300], Ratio.parse("any"), 320, 240) == (0, 0, 320, 240)
    x1, y1, x2, y2 = snap([100.0, 50.0, 260.0, 140.0], Ratio.parse("16:9"), 320, 240)
    assert (x2 - x1, y2 - y1) == (160, 90) and ((x1 + x2) / 2, (y1 + y2) / 2) == (180.0, 95.0)
    assert snap([250.0, 200.0, 410.0, 290.0], Ratio.parse("16:9"), 320, 240) == (160, 150, 320, 240)  # moved inside
    assert snap([0.0, 0.0, 500.0, 500.0], Ratio.parse("1:1"), 320, 240) == (80, 0, 320, 240)  # no larger than the largest


def test_refine_box_keeps_centre_and_area_at_the_ratio_and_stays_inside():
    from s2ccrop.select import refine_box
    from s2ccrop.types import Ratio

    # free-form: clipped to the image, whole pixels
    assert refine_box([-5.2, 10.4, 200.6, 260.0], Ratio.parse("any"), 320, 240) == (0, 10, 201, 240)
    # 16:9 from a 120 x 120 box centred at (160, 120): area 14400 -> 160 x 90, same centre
    assert refine_box([100.0, 60.0, 220.0, 180.0], Ratio.parse("16:9"), 320, 240) == (80, 75, 240, 165)
    # too big and off the edge: the ratio's largest box, moved inside
    assert refine_box([100.0, 100.0, 600.0, 400.0], Ratio.parse("1:1"), 320, 240) == (80, 0, 320, 240)
    # the same 16:9 area about another centre (the crop's own, for refine_ratio_given = "size")
    assert refine_box([100.0, 60.0, 220.0, 180.0], Ratio.parse("16:9"), 320, 240, (100.0, 100.0)) == (20, 55, 180, 145)
    # a centre is for fixed ratios: free-form boxes are the moved box, clipped
    assert refine_box([-5.2, 10.4, 200.6, 260.0], Ratio.parse("any"), 320, 240, (1.0, 1.0)) == (0, 10, 201, 240)


def _refining_cropper(offsets, seed=2, ratio_given="move"):
    torch.manual_seed(seed)
    model = S2CNet(S2CNetConfig(align_size=9, num_boxes=4, box_refiner=True, selection="average",
                                refine_ratio_given=ratio_given)).eval()
    with torch.no_grad():
        model.BoxRefiner.mlp[2].weight.zero_()
        model.BoxRefiner.mlp[2].bias.copy_(torch.atanh(torch.tensor(offsets) / 0.4))
    plain = S2CNet(S2CNetConfig(align_size=9, num_boxes=4, selection="average")).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("BoxRefiner")})
    return Cropper(weights=model, device="cpu"), Cropper(weights=plain, device="cpu")


def test_a_refining_model_moves_each_chosen_crop_and_scores_the_moved_box():
    """A refiner that grows every box by 10 % of its side on the left and 5 % at the bottom: each crop
    is the plain model's choice moved so (`select.refine_box`), and its score is the model's of that box."""
    from s2ccrop.select import refine_box
    from s2ccrop.types import Ratio

    refining, plain = _refining_cropper([-0.1, 0.0, 0.0, 0.05])
    img = photo_image(seed=9, kind="noise")
    ratios = ["any", "4:5", "16:9"]
    before, after = plain.crop(img, ratios), refining.crop(img, ratios)
    p = refining.prepare(img)
    for r, b, a in zip(ratios, before, after):
        x1, y1, x2, y2 = b.box
        w, h = x2 - x1, y2 - y1
        assert a.box == refine_box([x1 - 0.1 * w, y1, x2, y2 + 0.05 * h], Ratio.parse(r), 320, 240), r
        assert a.box != b.box
        assert a.score == pytest.approx(float(refining.score(p, np.array([a.box], dtype=float))[0]), abs=1e-5)


def test_a_refiner_leaves_ratio_given_crops_or_changes_only_their_size_as_the_config_says():
    """`refine_ratio_given`: "off" moves the free-form crop as "move" does and leaves the ratio-given
    crops as the plain model chose them, score and all; "size" gives each ratio-given crop the moved
    box's area about the plain crop's own centre (`select.refine_box` with that centre)."""
    from s2ccrop.select import refine_box
    from s2ccrop.types import Ratio

    offsets = [-0.1, 0.0, 0.0, 0.05]
    off, plain = _refining_cropper(offsets, ratio_given="off")
    sized, _ = _refining_cropper(offsets, ratio_given="size")
    everything, _ = _refining_cropper(offsets)
    img = photo_image(seed=9, kind="noise")
    ratios = ["16:9", "any", "4:5"]
    before, moved = plain.crop(img, ratios), everything.crop(img, ratios)
    after, resized = off.crop(img, ratios), sized.crop(img, ratios)
    for crops in (after, resized):
        assert crops[1].box == moved[1].box != before[1].box
        assert crops[1].score == pytest.approx(moved[1].score, abs=1e-6)
    for i in (0, 2):
        assert after[i].box == before[i].box != moved[i].box
        assert after[i].score == pytest.approx(before[i].score, abs=1e-6)
        x1, y1, x2, y2 = before[i].box
        w, h = x2 - x1, y2 - y1
        grown = [x1 - 0.1 * w, y1, x2, y2 + 0.05 * h]
        assert resized[i].box == refine_box(grown, Ratio.parse(ratios[i]), 320, 240, ((x1 + x2) / 2, (y1 + y2) / 2))
        assert resized[i].box not in (before[i].box, moved[i].box)
    assert [c.box for c in off.crop(img, ["1:1"])] == [c.box for c in plain.crop(img, ["1:1"])]


def test_the_refiner_never_moves_a_crop_into_a_face():
    """A face just right of the chosen free-form crop: the refiner's move to the right would cut it, so
    the crop stays where the plain model put it; a move away from the face is kept."""
    towards, plain = _refining_cropper([0.0, 0.0, 0.06, 0.0])  # x2 + ~13 px: into the face, not past it
    away, _ = _refining_cropper([-0.05, 0.0, 0.0, 0.0])
    img = photo_image(seed=9, kind="noise")
    x1, y1, x2, y2 = plain.crop(img, ["any"])[0].box
    assert x1 >= 10 and x2 <= 300  # room on both sides (the random model's choice is fixed by its seed)
    face = [[(x2 + 6) / 320, (y1 + 5) / 240, (x2 + 20) / 320, (y1 + 25) / 240]]
    guarded = plain.crop(img, ["any"], faces=face)[0].box  # the face may move the average a little
    assert guarded[2] <= x2 + 2
    assert towards.crop(img, ["any"], faces=face)[0].box == guarded
    assert towards.crop(img, ["any"])[0].box[2] > x2  # without the face it moves
    assert away.crop(img, ["any"], faces=face)[0].box[0] < guarded[0]


def test_a_model_with_a_smaller_input_gets_photos_at_its_own_size():
    """Our configs may set the model input's short side (`input_short_side`); the Cropper resizes to it,
    and reference configs keep the SPEC's 256."""
    from s2ccrop.preprocess import model_size

    torch.manual_seed(3)
    small = Cropper(weights=S2CNet(S2CNetConfig(align_size=9, num_boxes=4, input_short_side=192)).eval(), device="cpu")
    img = photo_image((640, 480), seed=4, kind="noise")
    p = small.prepare(img)
    assert p.model_size == model_size(640, 480, short_side=192) == (256, 192)
    assert tuple(p.tensor.shape) == (1, 3, 192, 256)
    assert tuple(small.features([p]).shape[-2:]) == (12, 16)
    crop = small.crop(img, ["4:3"])[0]
    assert crop.width * 3 == crop.height * 4
    assert Cropper(weights=S2CNet(S2CNetConfig(align_size=9, num_boxes=4)).eval(), device="cpu").prepare(img).model_size == (352, 256)
    with pytest.raises(ValueError, match="input_short_side"):
        S2CNetConfig(input_short_side=32)
