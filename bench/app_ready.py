"""Time to usable of the app page (`fer-nb serve`): seconds from the server answering HTTP to an enabled upload
button in headless Chromium, over several fresh servers; the target is 5 s.

    python bench/app_ready.py [--runs 3]

It runs the browser test (tests/test_browser.py::test_app_page_in_browser), which prints the number, once per run."""
import argparse, re, statistics, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--runs', type=int, default=3)
    a = ap.parse_args()
    times = []
    for i in range(a.runs):
        r = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-s', 'tests/test_browser.py', '-k', 'in_browser'],
                           cwd=ROOT, capture_output=True, text=True)
        m = re.search(r'app page usable ([\d.]+) s', r.stdout)
        if not m: print(f'run {i + 1}: no measurement (is Chromium installed?)\n{r.stdout[-800:]}'); return 2
        times.append(float(m.group(1))); print(f'run {i + 1}: usable after {times[-1]:.2f} s')
    print(f'app page time to usable: median {statistics.median(times):.2f} s, best {min(times):.2f} s, worst {max(times):.2f} s (target 5 s)')
    return 0

if __name__ == '__main__': sys.exit(main())
