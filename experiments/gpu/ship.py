"""Ship each run's last checkpoint as a small float16 inference file and summarise the runs (called by run.sh).

    python3 experiments/gpu/ship.py --work WORK --out OUT NAME=EXIT_CODE …

For NAME it reads WORK/checkpoints/NAME/last.pt and writes OUT/NAME.pt with `fer_nb.model.ship_checkpoint(…, ema=True)`
(the EMA weights, which validation scored; the raw weights where the run kept no EMA), refusing any file over 16 MiB,
the most the device tool brings back per file. OUT/summary.json says per run how far it got and what it scored.
"""
from __future__ import annotations
import argparse, json, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ferpack  # noqa: F401  (puts this checkout's fer_nb on the path)
from fer_nb.model import read_checkpoint, ship_checkpoint

FILE_LIMIT = 16*2**20   # the device tool brings back files of at most 16 MiB

def how_it_ended(code:int)->str:
    return {0: 'finished', 124: 'stopped at the time limit', 137: 'killed at the time limit'}.get(code, f'failed (exit {code})')

def ship_one(work:Path, out:Path, name:str, code:int)->dict:
    "Ship one run; its line in the summary."
    last = work/'checkpoints'/name/'last.pt'
    row = dict(run=name, ended=how_it_ended(code))
    if not last.is_file(): return dict(row, shipped=None, note='no epoch finished: nothing to ship')
    trained = read_checkpoint(last)
    ema = 'ema_state_dict' in trained
    dst = ship_checkpoint(last, out/f'{name}.pt', ema=ema)
    row.update(epochs=f"{trained['epoch']}/{trained['config']['epochs']}", weights='ema' if ema else 'raw',
               valid_acc=trained['metrics']['valid_acc'], valid_bal_acc=trained['metrics']['valid_bal_acc'],
               train_seconds=round(trained['train_seconds']), images_per_s=round(trained['history'][-1]['images_per_s']),
               machine=trained['machine'], shipped=dst.name, bytes=dst.stat().st_size)
    if dst.stat().st_size > FILE_LIMIT:
        dst.unlink(); row.update(shipped=None, note=f"{row['bytes']/1e6:.1f} MB is over the 16 MiB a file may come back with")
    return row

def main(argv=None)->int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--work', required=True, help='run.sh scratch folder (checkpoints/NAME/last.pt)')
    p.add_argument('--out', required=True, help='where shipped files go (the device tool brings back $OUT)')
    p.add_argument('runs', nargs='+', metavar='NAME=EXIT_CODE')
    args = p.parse_args(argv)
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    rows = []
    for spec in args.runs:
        name, code = spec.rsplit('=', 1)
        try: rows.append(ship_one(Path(args.work), out, name, int(code)))
        except Exception as e: rows.append(dict(run=name, ended=how_it_ended(int(code)), shipped=None, note=f'shipping failed: {e}'))
    (out/'summary.json').write_text(json.dumps(rows, indent=1) + '\n')
    for r in rows:
        parts = [r['ended']]
        if 'valid_acc' in r: parts.append(f"valid {r['valid_acc']:.4f} (balanced {r['valid_bal_acc']:.4f}) after {r['epochs']} epochs, {r['train_seconds']} s")
        if r['shipped']: parts.append(f"shipped {r['shipped']}")
        if r.get('note'): parts.append(r['note'])
        print(f"{r['run']}: " + '; '.join(parts))
    return 0 if all(r['shipped'] for r in rows) else 1

if __name__ == '__main__': sys.exit(main())
