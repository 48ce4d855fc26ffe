"""Rebuild FERPlus (Microsoft's layout) and the backbone cache from a pack made by pack.py, and prove them pixel-exact.

    python3 experiments/gpu/unpack.py [--pack out/gpu_pack] [--ferplus /tmp/ferplus] [--backbones /tmp/fer_nb_backbones]
                                      [--verify-against ORIGINAL_FERPLUS_DIR]

The faces are checked twice against the sha256 pack.py saved: once as decoded from the mosaics, once as the project's
loader reads back the PNGs written here (through its cache, which is thereby warm for the training runs that follow).
--verify-against also compares what `fer_nb.data.load_ferplus` returns for both folders, in every label mode.
Then: export FERPLUS_DIR=<--ferplus> FER_NB_BACKBONES=<--backbones>.
"""
from __future__ import annotations
import argparse, hashlib, lzma, os, shutil, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ferpack import (FORMAT, INDEX, MANIFEST, REPO, SPLITS, PackError, decode_weights, decoded_split,
                     fail_in_one_line, from_sheet, labels_name, read_json, sha256)
from fer_nb.data import _read_label_csv

def read_manifest(pack:Path)->dict:
    if not (pack/MANIFEST).is_file(): raise PackError(f"no pack at {pack}: run experiments/gpu/pack.py (and carry out/gpu_pack)")
    manifest = read_json(pack/MANIFEST)
    if manifest.get('format') != FORMAT: raise PackError(f"{pack}: format {manifest.get('format')!r}, this script reads {FORMAT!r}")
    return manifest

def read_pool(pack:Path, manifest:dict)->np.ndarray:
    "Every packed face, in pool order (train's mosaics, then valid's)."
    pool = []
    for split in SPLITS:
        entry = manifest['ferplus'][split]; left = entry['pool']
        for name in entry['sheets']:
            with Image.open(pack/name) as im: sheet = np.asarray(im.convert('L'))   # lossless: R = G = B = the grey value
            pool.append(from_sheet(sheet, min(left, len(sheet)//48*manifest['grid']))); left -= len(pool[-1])
    return np.concatenate(pool)

def faces_of(split:str, pool:np.ndarray, index, manifest:dict)->np.ndarray:
    "One split's faces, in label.csv order, checked against pack.py's sha256."
    faces = pool[index[f'{split}_pool']]
    if sha256(faces) != manifest['ferplus'][split]['sha256']: raise PackError(f"{split}: the faces decoded from the mosaics differ from what was packed (damaged pack?)")
    return faces

def write_split(pack:Path, dest:Path, split:str, faces:np.ndarray, rows:np.ndarray, manifest:dict):
    "Microsoft's layout for one split: label.csv as packed and one 48×48 grey PNG per face that decoded at packing."
    folder = dest/manifest['ferplus'][split]['folder']; folder.mkdir(parents=True, exist_ok=True)
    labels = lzma.decompress((pack/labels_name(split)).read_bytes())
    if hashlib.sha256(labels).hexdigest() != manifest['ferplus'][split]['labels_sha256']: raise PackError(f"{split}: label.csv differs from what was packed")
    (folder/'label.csv').write_bytes(labels)
    names = _read_label_csv(folder/'label.csv').name.to_numpy()[rows]
    save = lambda i: Image.fromarray(faces[i]).save(folder/names[i], compress_level=1)   # PNG size does not matter here, time does
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool: list(pool.map(save, range(len(faces))))   # zlib lets go of the GIL

def check_as_loaded(dest:Path, split:str, rows:np.ndarray, manifest:dict):
    "Read the PNGs back as the loader does (warming its cache) and compare with the packed checksum."
    faces, got_rows, _ = decoded_split(dest, split)
    if not np.array_equal(got_rows, rows) or sha256(faces) != manifest['ferplus'][split]['sha256']:
        raise PackError(f"{split}: the loader reads back other faces than were packed from {dest}")

def restore_backbone(pack:Path, entry:dict, folder:Path)->Path:
    "Write the converted backbone where fer_nb looks for it ($FER_NB_BACKBONES), as float32 like `fer-nb backbone` does."
    from fer_nb.model import atomic_save
    spec = read_json(pack/f"backbone-{entry['name']}.json")
    record = dict(spec['record'], state_dict=decode_weights(spec['layout'], (pack/f"backbone-{entry['name']}.f16.xz").read_bytes()))
    folder.mkdir(parents=True, exist_ok=True)
    return atomic_save(record, folder/f"{entry['name']}.pt")

def restore_files(pack:Path, files:list, repo:Path):
    "Put carried checkpoints back at their path in the repository; never over a different file."
    for rel in files:
        src, dst = pack/'files'/rel, repo/rel
        if dst.exists() and dst.read_bytes() != src.read_bytes(): raise PackError(f"{dst} exists and differs from the packed {rel}: move it away first")
        dst.parent.mkdir(parents=True, exist_ok=True); shutil.copyfile(src, dst)

def verify_against(original:Path, dest:Path):
    "The project's loader gives the same faces, labels, targets and metadata from both folders, in every label mode and class count."
    from fer_nb.data import load_ferplus
    for split in SPLITS:
        for mode in ('majority', 'probability', 'crossentropy'):
            for classes in (7, 8):
                a, b = load_ferplus(original, split, mode, classes), load_ferplus(dest, split, mode, classes)
                same = (np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels) and a.classes == b.classes
                        and np.array_equal(a.targets(mode), b.targets(mode)) and a.meta.equals(b.meta))
                if not same: raise PackError(f"{split} ({mode}, {classes} classes): the loader's output differs between {original} and {dest}")
        print(f"  {split}: identical to {original} ({len(a)} faces in the last mode checked)")

def parse_args(argv):
    tmp = Path(os.environ.get('TMPDIR') or tempfile.gettempdir())
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--pack', default=str(REPO/'out'/'gpu_pack'), help='the pack folder (default: out/gpu_pack)')
    p.add_argument('--ferplus', default=str(tmp/'ferplus'), help='where to rebuild FERPlus (default: $TMPDIR/ferplus)')
    p.add_argument('--backbones', default=os.environ.get('FER_NB_BACKBONES') or str(tmp/'fer_nb_backbones'),
                   help='the backbone cache folder to fill (default: $FER_NB_BACKBONES, else $TMPDIR/fer_nb_backbones)')
    p.add_argument('--repo', default=str(REPO), help='where carried checkpoints go back to (default: this checkout)')
    p.add_argument('--verify-against', metavar='ORIGINAL', help='also compare the loader output with this FERPlus folder')
    return p.parse_args(argv)

@fail_in_one_line
def main(argv=None)->int:
    args = parse_args(argv)
    t0 = time.time()
    pack, dest = Path(args.pack).resolve(), Path(args.ferplus).resolve()
    manifest = read_manifest(pack)
    with np.load(pack/INDEX) as z: index = {k: z[k] for k in z.files}
    pool = read_pool(pack, manifest)
    for split in SPLITS:
        rows = index[f'{split}_rows']
        write_split(pack, dest, split, faces_of(split, pool, index, manifest), rows, manifest)
        check_as_loaded(dest, split, rows, manifest)
    if (pack/'LICENSE-FERPlus-labels.md').is_file(): shutil.copyfile(pack/'LICENSE-FERPlus-labels.md', dest/'LICENSE-FERPlus-labels.md')
    print(f"FERPlus train and valid rebuilt in {dest}, pixel-exact ({time.time() - t0:.0f} s)")
    if manifest['backbone']: print(f"backbone: {restore_backbone(pack, manifest['backbone'], Path(args.backbones))}")
    restore_files(pack, manifest['files'], Path(args.repo))
    for rel in manifest['files']: print(f"restored {rel}")
    if args.verify_against: verify_against(Path(args.verify_against), dest)
    print(f"unpacked in {time.time() - t0:.0f} s; export FERPLUS_DIR={dest} FER_NB_BACKBONES={Path(args.backbones).resolve()}")
    return 0

if __name__ == '__main__': sys.exit(main())
