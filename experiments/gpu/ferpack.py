"""What pack.py and unpack.py share: the pack's layout, the face mosaics, the backbone's compact form, checksums.

A pack is one folder (out/gpu_pack by default) that the device tool carries to the GPU machine:

    manifest.json             what is inside, with a sha256 per FERPlus split (of the decoded N×48×48 uint8 faces)
    index.npz                 per split: the label.csv rows that decoded, and where each one's face sits in the mosaics
    train-00.webp …           lossless WebP mosaics of 64×64 faces: train's distinct faces, then valid's faces not in train
    FER2013Train.label.csv.xz Microsoft's label files, byte for byte (xz-compressed)
    FER2013Valid.label.csv.xz
    backbone-faceres.json     the converted backbone's record without its weights, and each weight's name and shape
    backbone-faceres.f16.xz   its weights as float16, high and low bytes in two planes (xz packs that tighter), compressed
    files/…                   extra checkpoints (--teacher), at their path inside the repository
"""
from __future__ import annotations
import hashlib, json, lzma, os, subprocess, sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path: sys.path.insert(0, str(REPO))   # fer_nb from this checkout, installed or not (the GPU machine has no .venv)

from fer_nb.data import FERPLUS_SPLITS, FACE_SIZE, FerError, _decoded_ferplus

FORMAT = 'fer_nb/gpu-pack1'
SPLITS = ('train', 'valid')      # the test split is not needed for training
GRID = 64                        # faces per mosaic side: 64×48 = 3072 px, well inside WebP's 16383
MANIFEST, INDEX = 'manifest.json', 'index.npz'
DEVICE_LIMIT = 64*2**20          # what the device tool carries in all: the working tree plus carried paths
PACK_CAP = 60*2**20              # the cap on the pack itself

class PackError(Exception):
    "A problem to report in one line, without a traceback."

def fail_in_one_line(main):
    "Run `main`, turning our errors and fer_nb's into a one-line message and exit status 1."
    def wrapped(argv=None):
        try: return main(argv)
        except (PackError, FerError) as e:
            print(f"{Path(sys.argv[0]).name}: error: {e}", file=sys.stderr); return 1
    return wrapped

def sha256(a:np.ndarray)->str:
    "The sha256 of an array's bytes in C order."
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()

def label_csv(root:Path, split:str)->Path:
    return Path(root)/FERPLUS_SPLITS[split]/'label.csv'

def labels_name(split:str)->str:
    "The pack's file holding one split's label.csv."
    return f'{FERPLUS_SPLITS[split]}.label.csv.xz'

def decoded_split(root:Path, split:str)->tuple:
    """(faces N×48×48 uint8, label.csv rows that decoded), exactly as `fer_nb.data.load_ferplus` decodes them before labelling.

    Same reader and same cache key as the loader, so an existing cache is reused here (no 30k PNGs to decode) and,
    on the GPU machine, warmed for the training processes that start next."""
    csvp = label_csv(root, split)
    if not csvp.is_file(): raise PackError(f"{root} is not in the FERPlus layout: {csvp} is missing")
    meta, arrays, _ = _decoded_ferplus(Path(root), split)
    return arrays['images'], arrays['rows'], meta

# --- face mosaics -------------------------------------------------------------------------------------------
def to_sheets(faces:np.ndarray)->list:
    "N×48×48 faces → mosaics of up to GRID×GRID faces, row by row; the last one only as tall as it needs."
    sheets = []
    for start in range(0, len(faces), GRID*GRID):
        chunk = faces[start:start + GRID*GRID]
        rows = -(-len(chunk)//GRID)
        padded = np.zeros((rows*GRID, FACE_SIZE, FACE_SIZE), np.uint8); padded[:len(chunk)] = chunk
        sheets.append(padded.reshape(rows, GRID, FACE_SIZE, FACE_SIZE).transpose(0, 2, 1, 3).reshape(rows*FACE_SIZE, GRID*FACE_SIZE))
    return sheets

def from_sheet(sheet:np.ndarray, count:int)->np.ndarray:
    "The first `count` faces of one mosaic (the inverse of `to_sheets`)."
    rows = sheet.shape[0]//FACE_SIZE
    faces = sheet.reshape(rows, FACE_SIZE, GRID, FACE_SIZE).transpose(0, 2, 1, 3).reshape(rows*GRID, FACE_SIZE, FACE_SIZE)
    return faces[:count]

# --- the backbone ------------------------------------------------------------------------------------------
def encode_weights(state:dict)->tuple:
    "(layout: [[name, shape], …], xz bytes): every tensor as float16, the high and low bytes of all of them in two planes."
    import torch
    layout = [[k, list(v.shape)] for k, v in state.items()]
    halves = np.concatenate([v.detach().to(torch.float16).numpy().ravel() for v in state.values()])
    planes = halves.view(np.uint8).reshape(-1, 2).T   # byte planes: the exponent-bearing high bytes compress well on their own
    return layout, lzma.compress(planes.tobytes(), preset=9)

def decode_weights(layout:list, blob:bytes)->dict:
    "The state dict from `encode_weights`, as float32 tensors (what `fer-nb backbone` writes)."
    import torch
    planes = np.frombuffer(lzma.decompress(blob), np.uint8).reshape(2, -1)
    halves = np.ascontiguousarray(planes.T).view(np.float16).ravel()
    state, at = {}, 0
    for name, shape in layout:
        n = int(np.prod(shape, dtype=np.int64))
        state[name] = torch.from_numpy(halves[at:at + n].astype(np.float32).reshape(shape)); at += n
    if at != len(halves): raise PackError(f"backbone weights: {len(halves)} values for a layout of {at}")
    return state

# --- sizes -------------------------------------------------------------------------------------------------
def folder_bytes(folder:Path)->int:
    return sum(p.stat().st_size for p in Path(folder).rglob('*') if p.is_file())

def tree_bytes(repo:Path=REPO)->int:
    "What the device tool sends besides carried paths: tracked files and untracked ones git does not ignore (and shared/)."
    out = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=repo,
                         capture_output=True, check=True).stdout
    paths = {repo/p for p in out.decode().split('\0') if p}
    if (repo/'shared').is_dir(): paths |= {p for p in (repo/'shared').rglob('*')}
    return sum(p.lstat().st_size for p in paths if p.is_file() or p.is_symlink())   # deleted-but-tracked files are skipped

def mb(n:int)->str: return f"{n/1e6:.1f} MB"

def write_json(path:Path, obj): Path(path).write_text(json.dumps(obj, indent=1) + '\n')
def read_json(path:Path): return json.loads(Path(path).read_text())
