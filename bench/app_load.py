"""A room full of visitors: N headless Chromium pages open `fer-nb serve` at once and each uploads a photo.

    python bench/app_load.py N [--page light|notebook] [--no-bare] [--pool 8] [--cull-idle 45] [--photo samples/astronaut.png]

`--page light` (the default) is the light page at /, `--page notebook` the Voila app at /notebook/ (a kernel per visitor).
In the same run the same N visitors first open a bare page: a file input served by Python's `http.server`, whose
upload is answered with a fixed label and no model. That is the floor the browsers themselves set on this machine.

The server (and the bare server) run on core 0, the browsers on core 1 (os.sched_setaffinity, as `taskset` does), so
the server's own cost shows; with fewer than two cores the run says it cannot pin and goes on unpinned.
For each visitor it prints the time to usable (from opening the URL to a file input the page's script has wired, or
the notebook's enabled upload button) and the time to label (from choosing the file to the label on the page). Then:
failures, the server's CPU seconds per visitor (predictions included), the server's memory (PSS of supervisor, model
process, Voila and its kernels) before, at the peak and after the visitors left, and the bytes one visit loads, with
every host it asked. The browsers' own memory is not counted (in a room it is on the visitors' phones).
Chromium is Debian's (`make browser`), driven by playwright; traffic stays on 127.0.0.1, and every wait is bounded.

Targets (issue #29, 32 visitors on the light page): 0 failures; slowest usable <= 1.3x the bare page's; labelled
within 3 s of the upload, or 1.5x the bare page's upload-to-label time where that is larger; <= 0.15 server CPU-s per
visitor; memory flat; the page <= 300 KB."""
import argparse, asyncio, json, os, shlex, signal, subprocess, sys, threading, time, urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'tests')); sys.path.insert(0, str(ROOT/'bench'))
from api_load import server_tree_mb, wait_health   # one copy of the memory and readiness helpers
from conftest import find_chromium

CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage']
SERVER_CORES, BROWSER_CORES = {0}, {1}
PAGE_BUDGET_KB = 300

# ---- the floor: a file input, served by http.server, whose upload gets a fixed label and no model
BARE_PAGE = b"""<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<link rel="icon" href="data:,"><title>bare</title></head><body>
<input id="photo" type="file" accept="image/*"><p id="out"></p>
<script>
document.getElementById('photo').addEventListener('change', async (e) => {
  const f = e.target.files[0];
  const r = await fetch('v1/predict', {method: 'POST', body: f});
  const a = await r.json();
  const s = document.createElement('span'); s.className = 'fer-label'; s.textContent = a.faces[0].label;
  document.getElementById('out').replaceChildren(s);
});
document.documentElement.dataset.ready = 'yes';
</script></body></html>"""

def bare_server(port:int):
    "Serve BARE_PAGE at / and answer POST /v1/predict with a fixed label, from Python's http.server (runs until killed)."
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    class Bare(BaseHTTPRequestHandler):
        def answer(self, body:bytes, ctype:str):
            self.send_response(200); self.send_header('Content-Type', ctype); self.send_header('Content-Length', str(len(body)))
            self.end_headers(); self.wfile.write(body)
        def do_GET(self): self.answer(BARE_PAGE, 'text/html; charset=utf-8')
        def do_POST(self):
            self.rfile.read(int(self.headers.get('Content-Length') or 0))   # the photo travels, as it does to the real server
            self.answer(json.dumps({'faces': [{'label': 'happiness'}]}).encode(), 'application/json')
        def log_message(self, *a): pass
    ThreadingHTTPServer(('127.0.0.1', port), Bare).serve_forever()

# ---- processes: CPU, memory, kernels
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

def pinned(cores:set):
    "A preexec_fn that runs a child on these cores (None where the machine cannot)."
    return (lambda: os.sched_setaffinity(0, cores)) if cores else None

def start(cmd:list, cores:set)->subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=pinned(cores))

def stop(proc:subprocess.Popen):
    os.killpg(proc.pid, signal.SIGTERM)
    try: proc.wait(30)
    except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL); proc.wait()

# ---- the visitors
async def usable(page, kind:str):
    "Wait until a visitor can upload: the wired file input (light, bare) or the enabled upload button (notebook)."
    if kind == 'notebook':
        button = page.locator('button.widget-upload'); await button.wait_for(state='visible')
        await page.wait_for_function("b => !b.disabled", arg=await button.element_handle())
        return button
    await page.wait_for_selector('html[data-ready]', state='attached')
    return page.locator('input[type=file]').first

async def upload(page, kind:str, target, photo:str):
    if kind == 'notebook':
        async with page.expect_file_chooser() as chooser: await target.click()
        await (await chooser.value).set_files(photo)
    else: await target.set_input_files(photo)

async def visit(browser, url:str, kind:str, photo:str, i:int, timeout_ms:int)->dict:
    "One visitor: open, wait until usable, upload, wait for the label."
    ctx = await browser.new_context(viewport={'width': 412, 'height': 860}); page = await ctx.new_page()
    page.set_default_timeout(timeout_ms); r = dict(visitor=i)
    try:
        t0 = time.perf_counter(); await page.goto(url, wait_until='commit')
        target = await usable(page, kind); r['usable'] = time.perf_counter() - t0
        t1 = time.perf_counter(); await upload(page, kind, target, photo)
        shown = page.locator('.fer-label, .fer-error').first; await shown.wait_for(state='visible')
        r['label_s'] = time.perf_counter() - t1; r['label'] = await shown.inner_text()
    except Exception as e: r['error'] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
    r['ctx'] = ctx
    return r

async def probe(browser, url:str, kind:str, photo:str)->dict:
    "One visit before the room arrives (it also warms the server): the bytes the page loads and the hosts it asks."
    ctx = await browser.new_context(); page = await ctx.new_page(); page.set_default_timeout(120_000)
    requests = []; page.on('request', lambda r: requests.append(r.url))
    await page.goto(url); target = await usable(page, kind); await upload(page, kind, target, photo)
    await page.locator('.fer-label, .fer-error').first.wait_for(state='visible')
    weight = await page.evaluate("performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))"
                                 ".reduce((n, e) => n + e.decodedBodySize, 0)")
    await ctx.close()
    hosts = sorted({urllib.parse.urlsplit(u).netloc for u in requests if not u.startswith(('data:', 'blob:'))})
    return dict(bytes=weight, requests=len(requests), hosts=hosts)

async def room(url:str, kind:str, n:int, photo:str, timeout_s:float, server_pid:int, weigh:bool)->dict:
    "The probe, then n visitors at once; their results and the server's CPU seconds meanwhile."
    from playwright.async_api import async_playwright
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS, headless=True)
        weight = await probe(browser, url, kind, photo) if weigh else None
        s0 = cpu_seconds(tree(server_pid)); t0 = time.perf_counter()
        results = await asyncio.gather(*[visit(browser, url, kind, photo, i, int(timeout_s*1000)) for i in range(n)])
        wall, cpu = time.perf_counter() - t0, cpu_seconds(tree(server_pid)) - s0
        for r in results: await r.pop('ctx').close()     # the visitors leave
        await browser.close()
    return dict(results=results, cpu=cpu, wall=wall, weight=weight)

def report(name:str, run:dict, n:int)->dict:
    "Print each visitor and the summary of one page; the numbers the targets need."
    for r in run['results']:
        print(f"  {name} visitor {r['visitor']:2d}: usable {r.get('usable', float('nan')):5.2f} s, label {r.get('label_s', float('nan')):5.2f} s after the upload"
              + (f"  FAILED {r['error']}" if 'error' in r else '') + (f"  ({r['label']})" if r.get('label', 'happiness') != 'happiness' else ''))
    ok = [r for r in run['results'] if 'error' not in r and r.get('label') == 'happiness']
    use = sorted(r['usable'] for r in run['results'] if 'usable' in r); lab = sorted(r['label_s'] for r in run['results'] if 'label_s' in r)
    s = dict(failures=n - len(ok), usable=max(use, default=float('nan')), usable_median=use[len(use)//2] if use else float('nan'),
             label=max(lab, default=float('nan')), label_median=lab[len(lab)//2] if lab else float('nan'), cpu=run['cpu']/n)
    print(f"{name}: {n} visitors, {s['failures']} failures; usable slowest {s['usable']:.2f} s (median {s['usable_median']:.2f}); "
          f"label after upload slowest {s['label']:.2f} s (median {s['label_median']:.2f}); server {run['cpu']:.2f} CPU-s = "
          f"{s['cpu']:.3f} per visitor; {run['wall']:.1f} s wall")
    return s

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('visitors', type=int, nargs='?', default=32)
    ap.add_argument('--page', choices=['light', 'notebook'], default='light', help='the light page at / (default) or the notebook app at /notebook/')
    ap.add_argument('--no-bare', action='store_true', help='skip the bare page (the floor)')
    ap.add_argument('--photo', default=str(ROOT/'samples'/'astronaut.png'))
    ap.add_argument('--cull-idle', type=int, default=45, help="seconds before a left visitor's notebook kernel is culled (the server's default is 120; shorter here to keep the run bounded)")
    ap.add_argument('--pool', type=int, default=8, help='preheated notebook kernels (`fer-nb serve --pool`; default 8, its default)')
    ap.add_argument('--serve-args', default='', help='extra `fer-nb serve` options')
    ap.add_argument('--timeout', type=float, default=120, help='seconds a visitor waits for each step')
    a = ap.parse_args()
    if find_chromium() is None: print('Chromium not found: `make browser` installs it'); return 2
    from fer_nb.model_service import free_port
    n, kind = a.visitors, a.page
    if (os.cpu_count() or 1) >= 2 and hasattr(os, 'sched_setaffinity'):
        server_cores, browser_cores = SERVER_CORES, BROWSER_CORES
        os.sched_setaffinity(0, browser_cores)      # this process, and the browsers it starts, on core 1
        print(f'pinned: servers on core {min(server_cores)}, browsers on core {min(browser_cores)}')
    else:
        server_cores = browser_cores = set()
        print(f'not pinned: {os.cpu_count()} core(s) or no sched_setaffinity here, so the server and the browsers share the cores')
    print(f'load average {os.getloadavg()[0]:.1f} before the run (another process may be training a model)')
    summary = {}
    # the floor: the same visitors on a bare page
    if not a.no_bare:
        port = free_port(); bare = start([sys.executable, str(Path(__file__).resolve()), '--bare-server', str(port)], server_cores)
        try:
            if not wait_port(port): print('the bare server did not start'); return 2
            summary['bare'] = report('bare', asyncio.run(room(f'http://127.0.0.1:{port}/', 'bare', n, a.photo, a.timeout, bare.pid, False)), n)
        finally: stop(bare)
    # the page itself
    port = free_port(); url = f'http://127.0.0.1:{port}/' + ('notebook/' if kind == 'notebook' else '')
    cmd = [sys.executable, '-m', 'fer_nb.cli', 'serve', '--port', str(port), '--cull-idle', str(a.cull_idle), '--pool', str(a.pool), *shlex.split(a.serve_args)]
    print('server:', ' '.join(cmd[2:]))
    proc = start(cmd, server_cores)
    try:
        if not wait_health(f'http://127.0.0.1:{port}/', proc): print('fer-nb serve did not start'); return 2
        deadline = time.monotonic() + 180
        while kernel_count(proc.pid) < a.pool and time.monotonic() < deadline: time.sleep(0.5)
        time.sleep(5)                                       # the pool's kernels finish running the page
        before = server_tree_mb(proc.pid); sampler = MemorySampler(proc.pid); sampler.start()
        run = asyncio.run(room(url, kind, n, a.photo, a.timeout, proc.pid, True))
        left = time.monotonic()
        if kind == 'notebook':    # back to the pool's kernels, within the cull timeout plus two culling rounds and a margin
            while kernel_count(proc.pid) > a.pool and time.monotonic() - left < a.cull_idle*1.5 + 30: time.sleep(1)
        else: time.sleep(5)
        sampler.stop.set(); sampler.join(); after = server_tree_mb(proc.pid)
    finally: stop(proc)
    s = summary[kind] = report(kind, run, n)
    w = run['weight']
    print(f"{kind} page: {w['bytes']/1000:.1f} KB in {w['requests']} requests (target <= {PAGE_BUDGET_KB} KB), hosts asked: {', '.join(w['hosts'])}")
    print(f"server memory (PSS): before {before:.0f} MB, peak {sampler.peak:.0f} MB, after {after:.0f} MB ({time.monotonic() - left:.0f} s after the visitors left)")
    if 'bare' in summary:
        b = summary['bare']; label_target = max(3.0, 1.5*b['label'])
        checks = [('0 failures', s['failures'] == 0),
                  (f"slowest usable {s['usable']:.2f} s <= 1.3 x bare {b['usable']:.2f} s = {1.3*b['usable']:.2f} s", s['usable'] <= 1.3*b['usable']),
                  (f"slowest label {s['label']:.2f} s <= max(3 s, 1.5 x bare {b['label']:.2f} s) = {label_target:.2f} s", s['label'] <= label_target),
                  (f"server {s['cpu']:.3f} CPU-s per visitor <= 0.15", s['cpu'] <= 0.15),
                  (f"page {w['bytes']/1000:.1f} KB <= {PAGE_BUDGET_KB} KB", w['bytes'] <= PAGE_BUDGET_KB*1000),
                  (f"only the server asked ({', '.join(w['hosts'])})", w['hosts'] == [f'127.0.0.1:{port}'])]
        for what, met in checks: print(f"  {'met' if met else 'NOT MET'}: {what}")
    return 0 if s['failures'] == 0 else 1

def wait_port(port:int, timeout:float=30)->bool:
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try: socket.create_connection(('127.0.0.1', port), timeout=1).close(); return True
        except OSError: time.sleep(0.1)
    return False

if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == '--bare-server': bare_server(int(sys.argv[2]))
    else: sys.exit(main())
