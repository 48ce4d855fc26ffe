"Importers of published layouts (RAF-DB, AffectNet, ExpW) on tiny synthetic trees: class mapping, splits, caching, one-line layout errors."
import warnings
import numpy as np
import pytest

from fer_nb.data import CLASSES, DataError
from fer_nb.importers import load_affectnet, load_rafdb
from fer_nb.faces import box_face_crops, largest_face_crop, load_expw
from fer_nb.synthetic import make_affectnet_tree, make_expw_tree, make_rafdb_tree

def one_line(excinfo): assert '\n' not in str(excinfo.value)

def test_rafdb_maps_raf_order_onto_ours(tmp_path):
    root = make_rafdb_tree(tmp_path/'raf', n=12)
    lines = (root/'basic'/'EmoLabel'/'list_patition_label.txt').read_text().split()
    # RAF's 1 surprise … 6 anger, 7 neutral: every line is read and mapped, whatever the file says
    raf_to_ours = {'1': 'surprise', '2': 'fear', '3': 'disgust', '4': 'happiness', '5': 'sadness', '6': 'anger', '7': 'neutral'}
    fs = load_rafdb(root, cache=tmp_path/'cache')
    assert fs.meta.label_name.tolist() == [raf_to_ours[c] for c in lines[1::2]]
    assert [CLASSES[i] for i in fs.labels] == fs.meta.label_name.tolist()
    assert fs.images.shape == (12, 48, 48) and fs.images.dtype == np.uint8
    assert (fs.meta.split == 'train').sum() == 9 and len(load_rafdb(root, 'test', cache=tmp_path/'cache')) == 3

def test_rafdb_cache_is_used_and_refreshed(tmp_path):
    root = make_rafdb_tree(tmp_path/'raf', n=6)
    first = load_rafdb(root, cache=tmp_path/'cache')
    assert len(list((tmp_path/'cache').glob('rafdb-*.npz'))) == 1
    np.testing.assert_array_equal(load_rafdb(root, cache=tmp_path/'cache').images, first.images)
    (root/'basic'/'EmoLabel'/'list_patition_label.txt').write_text('train_00001.jpg 1\n')   # a changed list is read again
    again = load_rafdb(root, cache=tmp_path/'cache')
    assert len(again) == 1 and again.meta.label_name[0] == 'surprise'

@pytest.mark.parametrize('remove, message', [('basic/EmoLabel/list_patition_label.txt', 'missing EmoLabel/list_patition_label.txt'),
                                             ('basic/Image/aligned', 'missing Image/aligned')])
def test_rafdb_layout_errors_name_what_is_missing(tmp_path, remove, message):
    import shutil
    root = make_rafdb_tree(tmp_path/'raf', n=3)
    p = root/remove; shutil.rmtree(p) if p.is_dir() else p.unlink()
    with pytest.raises(DataError, match=message) as e: load_rafdb(root)
    one_line(e)

def test_affectnet_drops_non_expressions_and_contempt(tmp_path):
    root = make_affectnet_tree(tmp_path/'aff', n=6)
    train7 = load_affectnet(root, cache=tmp_path/'cache')
    assert len(train7) == 6 and train7.classes == CLASSES and set(train7.meta.split) == {'train'}
    valid8 = load_affectnet(root, 'valid', classes=8, cache=tmp_path/'cache')
    assert len(valid8) == 7 and valid8.meta.label_name.iat[-1] == 'contempt' and valid8.labels[-1] == 7
    # AffectNet's 6 anger, 1 happy, 0 neutral → ours
    assert train7.meta.label_name.tolist()[:3] == ['anger', 'happiness', 'neutral']
    # the crop is the face box: a bright neutral box in a noisy picture comes out bright and flat
    assert train7.images[2].min() >= 180 and train7.images[0].max() < 90

def test_affectnet_layout_errors(tmp_path):
    root = make_affectnet_tree(tmp_path/'aff', n=3)
    with pytest.raises(DataError, match='splits train and valid'): load_affectnet(root, 'test')
    listing = root/'Manually_Annotated_file_lists'/'training.csv'
    listing.write_text(listing.read_text().replace('expression', 'emotion'))
    with pytest.raises(DataError, match=r'missing column\(s\) expression') as e: load_affectnet(root, use_cache=False)
    one_line(e)
    import shutil; shutil.rmtree(root/'Manually_Annotated_Images')
    with pytest.raises(DataError, match='missing Manually_Annotated_Images') as e: load_affectnet(root)
    one_line(e)

def test_expw_goes_through_the_face_step(tmp_path):
    root = make_expw_tree(tmp_path/'expw', pictures=3)
    fs = load_expw(root, cache=tmp_path/'cache')
    assert fs.meta.label_name.tolist() == ['happiness']*3 + ['neutral']
    assert fs.meta.aligned.tolist() == [True, True, True, False]      # the faceless box is a box crop
    for k in range(3):   # each face crop is the one the Predictor's face step makes of that picture
        np.testing.assert_array_equal(fs.images[k], largest_face_crop(root/'image'/'origin'/f'picture_{k}.jpg'))
    # a box that no detected face overlaps: a box crop of its square (the corner of picture_0, the background's flat colour)
    assert fs.images[3].std() < 3

def test_box_face_crops_fall_back_to_the_box(tmp_path):
    root = make_expw_tree(tmp_path/'expw', pictures=1)
    picture = root/'image'/'origin'/'picture_0.jpg'
    crops, aligned = box_face_crops(picture, [(0, 0, 40, 40)], detector='none')
    assert crops.shape == (1, 48, 48) and not aligned[0]

def test_expw_layout_errors(tmp_path):
    root = make_expw_tree(tmp_path/'expw', pictures=1)
    (root/'label'/'label.lst').write_text('picture_0.jpg 0 1 2 3\n')
    with pytest.raises(DataError, match=r'label.lst:1: expected') as e: load_expw(root)
    one_line(e)
    (root/'label'/'label.lst').write_text('picture_0.jpg 0 1 2 3 4 50.0 7\n')   # 7 is no ExpW label
    with pytest.raises(DataError, match=r'label\(0-6\)'): load_expw(root)
    import shutil; shutil.rmtree(root/'image')
    with pytest.raises(DataError, match='missing image/origin') as e: load_expw(root)
    one_line(e)

def test_rafdb_shared_copy(tmp_path):
    "RAF-DB as commonly downloaded (DATASET/{train,test}/{1..7}/ and the two label csvs): the same classes and splits as the official layout."
    from fer_nb.synthetic import make_rafdb_shared_tree
    root = make_rafdb_shared_tree(tmp_path/'raf', n=12)
    official = load_rafdb(make_rafdb_tree(tmp_path/'official', n=12), cache=tmp_path/'cache')
    shared = load_rafdb(root, cache=tmp_path/'cache')
    assert shared.meta.label_name.tolist() == official.meta.label_name.tolist()       # RAF's codes mapped onto our classes alike
    assert shared.meta.split.tolist() == official.meta.split.tolist() and shared.images.shape == (12, 48, 48)
    assert len(load_rafdb(root, 'test', cache=tmp_path/'cache')) == 3
    (root/'test_labels.csv').write_text('image,label\ntest_00010_aligned.jpg,9\n')
    with pytest.raises(DataError, match="has label '9', not one of RAF-DB's 1-7") as e: load_rafdb(root, use_cache=False)
    one_line(e)
    (root/'test_labels.csv').write_text('file,emotion\n')
    with pytest.raises(DataError, match='expected columns image and label') as e: load_rafdb(root, use_cache=False)
    one_line(e)

def test_affectnet_yolo_copy(tmp_path):
    "AffectNet's YOLO_format copy: a class per labels/*.txt (0 anger … 7 surprise, contempt dropped for 7 classes), the box cropped."
    from fer_nb.synthetic import make_affectnet_yolo_tree
    root = make_affectnet_yolo_tree(tmp_path/'aff', n=6)
    for split in ('train', 'valid', 'test'):
        fs = load_affectnet(root, split, cache=tmp_path/'cache')
        assert len(fs) == 6 and set(fs.meta.split) == {split} and fs.classes == CLASSES
        assert fs.meta.label_name.tolist() == ['anger', 'happiness', 'neutral']*2
        assert fs.images[2].min() >= 180 and fs.images[0].max() < 90                     # the box, not the noise around it
    eight = load_affectnet(root/'YOLO_format', 'train', classes=8, cache=tmp_path/'cache')
    assert len(eight) == 7 and eight.meta.label_name.iat[-1] == 'contempt'
    with pytest.raises(DataError, match="has splits train, valid, test, not 'val'") as e: load_affectnet(root, 'val')
    one_line(e)
    (root/'YOLO_format'/'train'/'labels'/'img000.txt').write_text('happy\n')
    with pytest.raises(DataError, match="expected 'class x y w h'") as e: load_affectnet(root, use_cache=False)
    one_line(e)
