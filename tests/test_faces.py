"The face step (fer_nb.faces): YuNet detection, FERPlus-framed alignment, odd photos."
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_nb.data import DataError, load_image
from fer_nb.synthetic import face_grid, group_photo, jpeg_bytes
from fer_nb.faces import (FER_FRAME, FoundFace, _eye_angle, find_faces, frame_transform, largest_face_crop, load_photo,
                          make_detector)

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope='module')
def astronaut(): return load_image(ROOT/'samples'/'astronaut.png')

def centre(box): return np.array([box[0] + box[2]/2, box[1] + box[3]/2])

def test_astronaut(astronaut):
    (f,) = find_faces(astronaut)
    assert isinstance(f, FoundFace) and f.crop.shape == (48, 48) and f.crop.dtype == np.uint8
    assert 200 < centre(f.box)[0] < 260 and 90 < centre(f.box)[1] < 150, f.box     # her face
    assert f.score > 0.9 and f.landmarks.shape == (5, 2) and f.landmarks[0, 0] < f.landmarks[1, 0]
    # aligned: her eyes land where FERPlus has them
    out = frame_transform(f.landmarks) @ np.c_[f.landmarks, np.ones(5)].T
    assert abs(out[1, 0] - out[1, 1]) < 1e-6 and abs(out[1, :2].mean() - FER_FRAME['eye_y']) < 2

def test_group_photo(astronaut):
    g, heads = group_photo(astronaut)
    faces = find_faces(jpeg_bytes(g, quality=90))
    assert len(faces) == 6
    for f, h in zip(faces, heads):                     # left to right, each inside its head
        c = centre(f.box)
        assert h[0] < c[0] < h[0] + h[2] and h[1] < c[1] < h[1] + h[3], (f.box, h)
    assert len(find_faces(g, 'haar')) <= 6

@pytest.mark.parametrize('angle', [-20, -5, 5, 10, 20])   # left after alignment at -10°: 3.6°, at ±30°: up to 4.6° (see nbs/04_faces)
def test_rotated_eyes_level(astronaut, angle):
    (f0,) = find_faces(astronaut); a0 = _eye_angle(f0.landmarks)
    tilted = astronaut.rotate(angle, Image.BICUBIC, expand=True, fillcolor=(128, 128, 128))
    (f,) = find_faces(tilted)
    true_eye_line = np.radians(a0 - angle)                # the upright eye line, turned with the photo
    v = frame_transform(f.landmarks)[:, :2] @ [np.cos(true_eye_line), np.sin(true_eye_line)]
    assert abs(np.degrees(np.arctan2(v[1], v[0]))) < 2

def test_grid_of_small_faces(astronaut):
    grid = face_grid(astronaut)
    assert len(find_faces(grid)) >= 27
    assert len(find_faces(grid, 'haar')) == 0           # the pitfall YuNet fixes

@pytest.mark.parametrize('side', [24, 30, 40])
def test_small_faces_in_a_photo(astronaut, side):
    "Faces of 24 px and up in a 640x480 photo: ONNX Runtime's YuNet (the default) finds every one OpenCV's finds, at the same places."
    from fer_nb.faces import YuNetDetector
    photo = face_grid(astronaut, n_cols=6, n_rows=4, face=side, size=(640, 480))
    by_ort, by_cv = (find_faces(photo, YuNetDetector(runtime=r)) for r in ('onnx', 'opencv'))
    assert len(by_ort) == len(by_cv) == 24, (side, len(by_ort), len(by_cv))     # all 24 (measured 2026-12-07: 24 and 24 at every side)
    assert max(np.abs(np.array(a.box) - b.box).max() for a, b in zip(by_ort, by_cv)) <= 1

def test_tiny_images_hold_no_face():
    for shape in [(1, 1, 3), (1, 1), (15, 15, 3), (8, 200, 3)]:
        assert find_faces(np.zeros(shape, np.uint8)) == []
    assert largest_face_crop(np.zeros((1, 1, 3), np.uint8)) is None

def test_100_megapixel_jpeg(astronaut, tmp_path):
    p = tmp_path/'huge.jpg'
    p.write_bytes(jpeg_bytes(astronaut.resize((10000, 10000), Image.BILINEAR), quality=20))
    im, s = load_photo(p)
    assert s == 1/8 and im.size == (1250, 1250)
    (f,) = find_faces(p)
    assert 200 < centre(f.box)[0]/(10000/512) < 260 and 80 < centre(f.box)[1]/(10000/512) < 160, f.box   # in the big photo's pixels
    with pytest.raises(DataError, match='decompression bomb'):                     # a PNG that size is still refused
        b = io.BytesIO(); Image.new('1', (10000, 10000)).save(b, 'PNG'); find_faces(b.getvalue())

def test_largest_face_crop(astronaut):
    pair = Image.new('RGB', (900, 512), (90, 90, 90)); pair.paste(astronaut.resize((256, 256)), (0, 100)); pair.paste(astronaut, (388, 0))
    faces = find_faces(pair)
    assert len(faces) == 2
    np.testing.assert_array_equal(largest_face_crop(pair), faces[1].crop)
    assert largest_face_crop(Image.new('RGB', (300, 200))) is None

def test_bad_input_is_one_line():
    for data, msg in [(b'', 'empty'), (b'not an image', 'not an image'), (jpeg_bytes(Image.new("RGB", (800, 600)), 75)[:3000], "truncated")]:
        with pytest.raises(DataError, match=msg) as e: find_faces(data)
        assert '\n' not in str(e.value)
    with pytest.raises(DataError, match='unknown detector'): make_detector('yolo')
