"""A room full of visitors on the app page: N headless Chromium pages open `fer-nb serve` at once and each uploads a photo.

    python bench/app_load.py N [--pool 8] [--cull-idle 20] [--photo samples/astronaut.png] [--serve-args '...']

For each visitor it prints the time to usable (from opening the URL to an enabled upload button) and the time
to label (from choosing the file to the label on the page), then the failures and the total memory (PSS) of
the server (supervisor, model process, Voila and every kernel): before the visitors, at the peak, and after they
left and their kernels were culled. The browsers' own memory is not counted (in a room it is on the visitors'
phones). Chromium is Debian's (`make browser`), driven by playwright; traffic stays on 127.0.0.1, and every wait
is bounded. Targets (issue #24, 16 visitors): 0 failures, slowest usable ≤ 10 s, labelled ≤ 5 s after the upload,
peak ≤ 3 GB."""
import argparse, asyncio, os, shlex, signal, subprocess, sys, threading, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'tests')); sys.path.insert(0, str(ROOT/'bench'))
from api_load import server_tree_mb, wait_health   # one copy of the memory and readiness helpers
from conftest import find_chromium

CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage']

def cpu_seconds(pids)->float:
    "User + system CPU seconds of these processes so far."
    import psutil
    total = 0.0
    for pid in pids:
        try: t = psutil.Process(pid).cpu_times(); total += t.user + t.system
        except psutil.Error: pass
    return total

def tree(pid:int)->list:
    import psutil
    try: return [pid] + [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess: return []

def chromium_pids()->list:
    import psutil
    return [p.pid for p in psutil.process_iter(['cmdline']) if 'chromium' in ' '.join(p.info['cmdline'] or [])[:200]]

def kernel_count(pid:int)->int:
    "How many page kernels the server runs now (a kernel shut down while counting is not counted)."
    import psutil
    n = 0
    for p in psutil.Process(pid).children(recursive=True):
        try: n += 'ipykernel' in ' '.join(p.cmdline())
        except psutil.Error: pass
    return n

class MemorySampler(threading.Thread):
    "Samples the server's PSS every `every` seconds; .peak holds the largest."
    def __init__(self, pid:int, every:float=0.5):
        super().__init__(daemon=True); self.pid, self.every, self.peak, self.stop = pid, every, 0.0, threading.Event()
    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, server_tree_mb(self.pid)); self.stop.wait(self.every)

async def visit(browser, url:str, photo:str, i:int, timeout_ms:int)->dict:
    "One visitor: open, wait until usable, upload, wait for the label."
    ctx = await browser.new_context(viewport={'width': 1000, 'height': 800}); page = await ctx.new_page()
    page.set_default_timeout(timeout_ms); r = dict(visitor=i)
    try:
        t0 = time.perf_counter(); await page.goto(url, wait_until='commit')
        button = page.locator('button.widget-upload'); await button.wait_for(state='visible')
        await page.wait_for_function("b => !b.disabled", arg=await button.element_handle())
        r['usable'] = time.perf_counter() - t0
        async with page.expect_file_chooser() as chooser: await button.click()
        t1 = time.perf_counter(); await (await chooser.value).set_files(photo)
        shown = page.locator('.fer-label, .fer-error').first; await shown.wait_for(state='visible')
        r['label_s'] = time.perf_counter() - t1; r['label'] = await shown.inner_text()
    except Exception as e: r['error'] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
    r['ctx'] = ctx
    return r

async def run_visitors(url:str, n:int, photo:str, timeout_s:float, server_pid:int)->tuple:
    "(each visitor's result, CPU seconds the browsers and the server used meanwhile)."
    from playwright.async_api import async_playwright
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS, headless=True)
        c0, s0 = cpu_seconds(chromium_pids()), cpu_seconds(tree(server_pid))
        results = await asyncio.gather(*[visit(browser, url, photo, i, int(timeout_s*1000)) for i in range(n)])
        cpu = dict(browsers=cpu_seconds(chromium_pids()) - c0, server=cpu_seconds(tree(server_pid)) - s0)
        for r in results: await r.pop('ctx').close()     # the visitors leave
        await browser.close()
    return results, cpu

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('visitors', type=int, nargs='?', default=16)
    ap.add_argument('--photo', default=str(ROOT/'samples'/'astronaut.png'))
    ap.add_argument('--cull-idle', type=int, default=45, help="seconds before a left visitor's kernel is culled (the server's default is 120; shorter here to keep the run bounded, but longer than a loaded page takes to connect)")
    ap.add_argument('--pool', type=int, default=8, help='preheated page kernels (`fer-nb serve --pool`; default 8, its default)')
    ap.add_argument('--serve-args', default='', help='extra `fer-nb serve` options')
    ap.add_argument('--timeout', type=float, default=120, help='seconds a visitor waits for each step')
    a = ap.parse_args()
    if find_chromium() is None: print('Chromium not found: `make browser` installs it'); return 2
    from fer_nb.serve import free_port
    port = free_port(); url = f'http://127.0.0.1:{port}/'
    cmd = [sys.executable, '-m', 'fer_nb.cli', 'serve', '--port', str(port), '--cull-idle', str(a.cull_idle), '--pool', str(a.pool), *shlex.split(a.serve_args)]
    print('server:', ' '.join(cmd[2:]), f'| load average {os.getloadavg()[0]:.1f} (another core may be training a model)')
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        if not wait_health(url, proc): print('fer-nb serve did not start'); return 2
        pool = a.pool
        deadline = time.monotonic() + 120
        while kernel_count(proc.pid) < pool and time.monotonic() < deadline: time.sleep(0.5)
        time.sleep(5)                                       # the pool's kernels finish running the page
        before = server_tree_mb(proc.pid); sampler = MemorySampler(proc.pid); sampler.start()
        t0 = time.perf_counter(); results, cpu = asyncio.run(run_visitors(url, a.visitors, a.photo, a.timeout, proc.pid)); wall = time.perf_counter() - t0
        left = time.monotonic()
        # culled: back to the pool's kernels, within the cull timeout plus two culling rounds and a margin
        while kernel_count(proc.pid) > pool and time.monotonic() - left < a.cull_idle*1.5 + 30: time.sleep(1)
        culled_s = time.monotonic() - left; sampler.stop.set(); sampler.join()
        after, kernels_after = server_tree_mb(proc.pid), kernel_count(proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try: proc.wait(30)
        except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL)
    for r in results:
        print(f"visitor {r['visitor']:2d}: usable {r.get('usable', float('nan')):5.1f} s, label {r.get('label_s', float('nan')):5.1f} s after the upload"
              + (f" ({r['label']})" if 'label' in r else '') + (f"  FAILED {r['error']}" if 'error' in r else ''))
    ok = [r for r in results if 'error' not in r and r.get('label') == 'happiness']
    usable = [r['usable'] for r in results if 'usable' in r]; labels = [r['label_s'] for r in results if 'label_s' in r]
    print(f"{a.visitors} visitors: {a.visitors - len(ok)} failures; usable: slowest {max(usable, default=float('nan')):.1f} s, "
          f"median {sorted(usable)[len(usable)//2] if usable else float('nan'):.1f} s; label after upload: slowest {max(labels, default=float('nan')):.1f} s (targets: 0, ≤ 10 s, ≤ 5 s)")
    print(f"CPU while visiting ({wall:.0f} s, 2 cores): headless browsers {cpu['browsers']:.0f} s, server and kernels {cpu['server']:.0f} s")
    print(f"server memory (PSS): before {before/1024:.2f} GB, peak {sampler.peak/1024:.2f} GB (target ≤ 3 GB), "
          f"after culling {after/1024:.2f} GB ({kernels_after} kernels left {culled_s:.0f} s after the visitors left)")
    return 0 if len(ok) == a.visitors else 1

if __name__ == '__main__': sys.exit(main())
