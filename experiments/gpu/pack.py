"""Pack FERPlus (train, valid) and the converted backbone into one folder small enough for the device tool (issue #28).

    nice -n 19 .venv/bin/python experiments/gpu/pack.py [--out out/gpu_pack] [--teacher checkpoints/x.pt …] [--no-backbone]

Faces go into lossless WebP mosaics, each distinct face once (FERPlus repeats about 1,500 of its train and valid faces);
the label files are kept byte for byte, so unpack.py rebuilds Microsoft's layout and the normal loader reads it unchanged.
The pack is built beside the old one and replaces it only when it fits: the device tool carries 64 MiB in all,
this checkout's source tree included.
"""
from __future__ import annotations
import argparse, hashlib, lzma, os, shutil, sys, time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ferpack import (DEVICE_LIMIT, FORMAT, GRID, INDEX, MANIFEST, PACK_CAP, REPO, SPLITS, FERPLUS_SPLITS, PackError,
                     decoded_split, encode_weights, fail_in_one_line, folder_bytes, label_csv, labels_name, mb, sha256, to_sheets, tree_bytes, write_json)

RESERVE = 2**20   # room for the source tree to grow between packing and the device call (a commit or two of notes)

def ferplus_root(given)->Path:
    "The FERPlus folder: --ferplus, else $FERPLUS_DIR; refused when missing."
    root = given or os.environ.get('FERPLUS_DIR')
    if not root: raise PackError("no FERPlus folder: set FERPLUS_DIR (or pass --ferplus DIR)")
    root = Path(root).expanduser()
    if not root.is_dir(): raise PackError(f"FERPlus folder not found: {root} (set FERPLUS_DIR to the folder with FER2013Train/ and FER2013Valid/)")
    return root

def backbone_file(name:str)->Path:
    "The converted backbone in fer_nb's cache; refused when it has not been fetched."
    from fer_nb.backbones import backbone_cache
    path = backbone_cache()/f'{name}.pt'
    if not path.is_file(): raise PackError(f"backbone {name} not found at {path}: run `fer-nb backbone {name}` first")
    return path

def pool_faces(splits:dict)->tuple:
    """Each distinct face once, in first-seen order over the splits: (pool faces per split, per split each row's pool index).

    FERPlus holds exact repeats (within train, and valid faces that are also in train); packing them once saves ~2.4 MB."""
    seen, pools, where = {}, {}, {}
    for split, faces in splits.items():
        fresh, index = [], np.empty(len(faces), np.int32)
        for i, face in enumerate(faces):
            key = face.tobytes()
            if key not in seen: seen[key] = len(seen); fresh.append(face)
            index[i] = seen[key]
        pools[split] = np.stack(fresh) if fresh else np.zeros((0, *faces.shape[1:]), np.uint8)
        where[split] = index
    return pools, where

def write_sheets(out:Path, split:str, faces:np.ndarray, effort:int)->list:
    "Save one split's pool faces as lossless WebP mosaics; their file names."
    names = []
    for n, sheet in enumerate(to_sheets(faces)):
        names.append(f'{split}-{n:02d}.webp')
        # quality is the effort in lossless mode: 100 is ~0.2% smaller than 50 for 4× the time (~10 s a mosaic)
        Image.fromarray(sheet).save(out/names[-1], 'WEBP', lossless=True, quality=effort, method=4)
    return names

def pack_ferplus(root:Path, out:Path, effort:int)->dict:
    "Mosaics, index and label files of the train and valid splits; the manifest's `ferplus` entry."
    decoded = {split: decoded_split(root, split)[:2] for split in SPLITS}
    pools, where = pool_faces({split: faces for split, (faces, _) in decoded.items()})
    entry, index = {}, {}
    for split, (faces, rows) in decoded.items():
        # byte for byte (names, boxes, votes), xz-compressed: 1.7 MB of text becomes 0.3 MB
        (out/labels_name(split)).write_bytes(lzma.compress(label_csv(root, split).read_bytes(), preset=9))
        sheets = write_sheets(out, split, pools[split], effort)
        entry[split] = dict(folder=FERPLUS_SPLITS[split], labels_sha256=hashlib.sha256(label_csv(root, split).read_bytes()).hexdigest(), faces=len(faces), pool=len(pools[split]), sheets=sheets, sha256=sha256(faces),
                            bytes=sum((out/s).stat().st_size for s in sheets))
        index[f'{split}_rows'], index[f'{split}_pool'] = rows.astype(np.int32), where[split]
    np.savez_compressed(out/INDEX, **index)
    licence = root/'LICENSE-FERPlus-labels.md'
    if licence.is_file(): shutil.copyfile(licence, out/licence.name)   # the labels' licence travels with them
    return entry

def float16_rounding(name:str, state:dict)->dict:
    """How far float16 moves the weights; refused when one does not fit float16 at all.

    float16 keeps 98.6% of faceres's values exactly; the others move by under 2^-11 of themselves (the tiny ones, under
    float16's smallest normal 6.1e-5, by under 3e-8): far below what fine-tuning changes."""
    import torch
    values = torch.cat([v.detach().float().ravel() for v in state.values()])
    rounded, normal = values.half().float(), values.abs() >= 2**-14
    if not torch.isfinite(rounded).all(): raise PackError(f"backbone {name}: weights beyond float16's range (±65504); it cannot be packed as float16")
    error = (rounded - values).abs()
    return dict(max_relative_rounding=float((error/values.abs())[normal].max()) if normal.any() else 0.0,
                max_abs_rounding_tiny=float(error[~normal].max()) if (~normal).any() else 0.0)

def pack_backbone(name:str, out:Path)->dict:
    "The backbone's weights as float16 byte planes, xz-compressed, and its record; the manifest's `backbone` entry."
    import torch
    source = backbone_file(name)
    record = torch.load(source, map_location='cpu', weights_only=True)
    state = record.pop('state_dict')
    rounding = float16_rounding(name, state)
    layout, blob = encode_weights(state)   # unpack.py writes them back as float32: the loader sees the usual file
    (out/f'backbone-{name}.f16.xz').write_bytes(blob)
    write_json(out/f'backbone-{name}.json', dict(record=record, layout=layout))
    return dict(name=name, source_bytes=source.stat().st_size, bytes=len(blob), **rounding)

def repo_relative(path)->Path:
    "A checkpoint to carry, as its path inside the repository (where configs name it); refused when missing or outside."
    p = Path(path).expanduser().resolve()
    if not p.is_file(): raise PackError(f"--teacher {path}: no such file")
    try: return p.relative_to(REPO)
    except ValueError: raise PackError(f"--teacher {path}: not inside {REPO} (configs name checkpoints by their path in the repository)") from None

def pack_files(paths:list, out:Path)->list:
    "Copy extra checkpoints (teachers, init checkpoints) as they are, under files/ at their path inside the repository."
    for rel in paths:
        (out/'files'/rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO/rel, out/'files'/rel)
    return [str(rel) for rel in paths]

def check_size(pack:int, tree:int):
    "Refuse a pack that would not travel: over the issue's 60 MiB cap, or over what the 64 MiB leaves beside the source tree."
    limit = min(PACK_CAP, DEVICE_LIMIT - tree - RESERVE)
    if pack > limit:
        raise PackError(f"pack is {mb(pack)}, over its limit of {mb(limit)} (64 MiB carried in all − {mb(tree)} source tree − {mb(RESERVE)} reserve"
                        f"{', capped at 60 MiB' if limit == PACK_CAP else ''}): drop --teacher files or pass --no-backbone")

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--ferplus', help='FERPlus folder (default: $FERPLUS_DIR)')
    p.add_argument('--out', default=str(REPO/'out'/'gpu_pack'), help='the pack folder (default: out/gpu_pack, which git ignores)')
    p.add_argument('--backbone', default='faceres', help='the converted backbone to pack (default: faceres)')
    p.add_argument('--no-backbone', action='store_true', help='leave the backbone out (runs that start from a checkpoint)')
    p.add_argument('--teacher', action='append', default=[], metavar='PATH', help='a checkpoint to carry as is (teachers, init); repeatable')
    p.add_argument('--effort', type=int, default=100, help='WebP lossless effort 0-100 (default 100: smallest)')
    return p.parse_args(argv)

@fail_in_one_line
def main(argv=None)->int:
    args = parse_args(argv)
    t0 = time.time()
    root, out = ferplus_root(args.ferplus), Path(args.out).resolve()
    if not args.no_backbone: backbone_file(args.backbone)   # refuse early, before minutes of encoding
    teachers = [repo_relative(p) for p in args.teacher]
    tmp = out.with_name(out.name + '.partial')
    shutil.rmtree(tmp, ignore_errors=True); tmp.mkdir(parents=True)
    try:
        manifest = dict(format=FORMAT, grid=GRID, ferplus=pack_ferplus(root, tmp, args.effort),
                        backbone=None if args.no_backbone else pack_backbone(args.backbone, tmp), files=pack_files(teachers, tmp))
        write_json(tmp/MANIFEST, manifest)
        size, tree = folder_bytes(tmp), tree_bytes()
        check_size(size, tree)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True); raise   # a failed pack leaves the last good one in place
    shutil.rmtree(out, ignore_errors=True); tmp.rename(out)
    parts = [f"{s} {mb(e['bytes'])} ({e['faces']} faces, {e['pool']} packed)" for s, e in manifest['ferplus'].items()]
    if manifest['backbone']: parts.append(f"backbone {mb(manifest['backbone']['bytes'])} (from {mb(manifest['backbone']['source_bytes'])})")
    if manifest['files']: parts.append(f"files {mb(folder_bytes(out/'files'))}")
    print(f"{out}: {mb(size)} ({size/2**20:.1f} MiB): " + ', '.join(parts))
    print(f"with the source tree ({mb(tree)}): {(size + tree)/2**20:.1f} of 64 MiB; packed in {time.time() - t0:.0f} s")
    return 0

if __name__ == '__main__': sys.exit(main())
