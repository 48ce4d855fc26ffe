// The light page of `fer-nb serve`: a photo goes to /v1/predict, the page draws the answer. Plain JavaScript, no
// framework, no build step, nothing loaded from anywhere but this server.
'use strict';
(() => {
  const MAX_SIDE = 1600;          // longest side sent: plenty for faces, a fraction of a 12 MP photo's bytes over busy Wi-Fi
  const REENCODE_OVER = 1.5e6;    // a photo that is small enough but heavier than this (bytes) is re-encoded too
  const JPEG_QUALITY = 0.9;
  const RETRY_FOR_MS = 60000;     // how long "busy" and "restarting" answers are retried before the page gives up
  const LIVE_SIDE = 480;          // live camera frames: small, the server needs only the faces
  const LIVE_EVERY_MS = 400;      // a phone's live camera asks at most this often, so a room's cameras leave room for photos
  const COLORS = {anger: '#e63946', disgust: '#6a994e', fear: '#8e6cc4', happiness: '#ffbe0b', sadness: '#3a86ff',
                  surprise: '#ff006e', neutral: '#aaaaaa', contempt: '#fb8500'};
  const $ = (id) => document.getElementById(id);
  const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
  const color = (label) => COLORS[label] || '#888888';

  class Shown extends Error {}    // a message for the page, one line
  class Stale extends Error {}    // a request nobody waits for any more (a newer photo, the camera stopped)

  let limit = null;               // the server's upload limit in MB, asked (GET v1/health) the first time a file goes as it is
  let photo = null;               // the photo on show: {blob, name, picture (drawable or null), width, height}
  let answer = null;              // its answer: {faces, maps?}
  let generation = 0;             // a new photo or setting bumps it; answers to older requests are dropped
  let stream = null;              // the live camera, while on

  // ---- one status line: progress in grey, errors in red (class fer-error), never more than one line
  function say(text, isError = false) {
    const s = $('status');
    s.textContent = isError ? `⚠ ${text}` : text;
    s.className = isError ? 'fer-error' : 'fer-status';
  }
  function fail(e) {
    if (e instanceof Stale) return;
    const text = e instanceof Shown ? e.message : `this page hit an error (${e && e.name || 'Error'}): reload it and try again`;
    say(text.split('\n')[0], true);
  }

  // ---- reading a photo: decoded and shrunk here when the browser can, sent as it is otherwise (HEIC)
  async function decode(file) {
    if (window.createImageBitmap) {
      try { return await createImageBitmap(file, {imageOrientation: 'from-image'}); }   // upright, as the photo's EXIF says
      catch (e) { /* not an image, or a browser that rejects the option: an <img> follows EXIF by default */ }
    }
    const url = URL.createObjectURL(file), img = new Image();
    img.src = url;
    try { await img.decode(); return img; } catch (e) { URL.revokeObjectURL(url); return null; }
  }
  const size = (pic) => [pic.naturalWidth || pic.width, pic.naturalHeight || pic.height];

  async function limitMB() {
    if (limit === null) {
      try { const r = await fetch('v1/health', {cache: 'no-store'}); limit = (r.ok && (await r.json()).max_upload_mb) || 50; }
      catch (e) { return 50; }            // the server will say it itself (413) if it is up at all
    }
    return limit;
  }

  async function prepare(file) {
    const name = file.name || 'photo';
    const heic = /^image\/hei[cf]/i.test(file.type) || /\.hei[cf]$/i.test(name);
    const pic = heic ? null : await decode(file);
    if (!pic) {         // the server reads HEIC, or says in one line what the file is not
      const mb = await limitMB();
      if (file.size > mb * 2 ** 20) throw new Shown(`${name}: too large (${Math.ceil(file.size / 2 ** 20)} MB): the limit is ${mb} MB`);
      return {blob: file, name, picture: null};
    }
    const [w0, h0] = size(pic), scale = Math.min(1, MAX_SIDE / Math.max(w0, h0));
    if (scale === 1 && file.size <= REENCODE_OVER) return {blob: file, name, picture: pic, width: w0, height: h0};
    const canvas = document.createElement('canvas');
    canvas.width = Math.max(1, Math.round(w0 * scale)); canvas.height = Math.max(1, Math.round(h0 * scale));
    const ctx = canvas.getContext('2d'); ctx.imageSmoothingQuality = 'high';
    ctx.drawImage(pic, 0, 0, canvas.width, canvas.height);
    if (pic.close) pic.close();
    const blob = await new Promise((done) => canvas.toBlob(done, 'image/jpeg', JPEG_QUALITY));
    if (!blob) throw new Shown(`${name}: this browser could not shrink the photo: try a smaller one`);
    return {blob, name, picture: canvas, width: canvas.width, height: canvas.height};
  }

  // ---- asking the server: busy and restarting are waited out (Retry-After), everything else is one line
  function retryAfter(header) {
    const s = Number(header);
    const wait = Number.isFinite(s) ? s : (Date.parse(header) - Date.now()) / 1000;
    return Math.min(30, Math.max(1, Math.round(wait) || 1));
  }

  async function ask(kind, what, {count, live = false}, wanted) {
    const q = new URLSearchParams({prior: $('everyday').checked ? 'train' : 'uniform', name: what.name});
    if (!count) q.set('count', '0');           // not a new photo (another setting, a camera frame): the room does not count it
    const until = Date.now() + (live ? 0 : RETRY_FOR_MS);
    for (;;) {
      let r;
      try {
        r = await fetch(`v1/${kind}?${q}`, {method: 'POST', body: what.blob, cache: 'no-store',
                                           headers: {'Content-Type': 'application/octet-stream'}});
      } catch (e) {                             // no answer at all: the server or the network is down
        if (Date.now() > until) throw new Shown('the server is not answering: check the connection, then try again');
        say('The server is not answering: trying again…'); await sleep(2000);
        if (!wanted()) throw new Stale();
        continue;
      }
      if (!wanted()) throw new Stale();
      const body = await r.json().catch(() => ({error: `the server answered ${r.status} ${r.statusText}`}));
      if (r.ok) return body;
      const restarting = body.reason === 'restarting';
      if (r.status === 503 && Date.now() < until) {
        const wait = retryAfter(r.headers.get('Retry-After'));
        say(`${restarting ? 'The server is restarting' : 'The server is busy'}: trying again in ${wait} s…`);
        await sleep(wait * 1000);
        if (!wanted()) throw new Stale();
        continue;
      }
      if (r.status === 503) throw new Shown(`the server is ${restarting ? 'still restarting' : 'still busy'}: try again in a minute`);
      if (r.status === 413) throw new Shown(`${what.name}: ${body.error || 'too large'}`);
      throw new Shown(body.error || `the server answered ${r.status}`);
    }
  }

  async function classify(count) {
    if (!photo) return;
    const gen = ++generation, heat = $('heat').checked;
    say(heat ? 'Looking for faces, and where the model looks…' : 'Looking for faces…');
    try {
      const body = await ask(heat ? 'explain' : 'predict', photo, {count}, () => gen === generation);
      answer = body; show();
    } catch (e) { if (gen === generation) fail(e); }
  }

  async function onFile(file) {
    const gen = ++generation;
    $('result').hidden = true; answer = null;
    say('Reading the photo…');
    try {
      const p = await prepare(file);
      if (gen !== generation) return;
      photo = p; await classify(true);
    } catch (e) { if (gen === generation) fail(e); }
  }

  // ---- drawing the answer: the photo with numbered boxes (and heat maps), then each face's label and seven bars
  function heatCanvas(maps, i) {
    const [, h, w] = maps.shape, raw = maps.bytes.subarray(i * h * w, (i + 1) * h * w);
    const c = document.createElement('canvas'); c.width = w; c.height = h;
    const img = c.getContext('2d').createImageData(w, h);
    const ramp = (x) => Math.round(255 * Math.min(1, Math.max(0, x)));
    for (let k = 0; k < raw.length; k++) {      // the JET colour map, as the notebook draws it
      const v = raw[k] / 255;
      img.data.set([ramp(1.5 - Math.abs(4 * v - 3)), ramp(1.5 - Math.abs(4 * v - 2)), ramp(1.5 - Math.abs(4 * v - 1)), 255], k * 4);
    }
    c.getContext('2d').putImageData(img, 0, 0);
    return c;
  }
  function decodeMaps(m) {
    if (!m) return null;
    const bin = atob(m.uint8), bytes = new Uint8Array(bin.length);
    for (let k = 0; k < bin.length; k++) bytes[k] = bin.charCodeAt(k);
    return {shape: m.shape, bytes};
  }

  function drawBoxes(ctx, faces, s, maps) {
    const line = Math.max(2, Math.round(ctx.canvas.width / 320)), font = Math.max(13, Math.round(ctx.canvas.width / 42));
    faces.forEach((f, i) => {
      const [x, y, w, h] = f.box.map((v) => v * s);
      if (maps) { ctx.globalAlpha = 0.45; ctx.drawImage(heatCanvas(maps, i), x, y, w, h); ctx.globalAlpha = 1; }
      ctx.lineWidth = line; ctx.strokeStyle = color(f.label); ctx.strokeRect(x, y, w, h);
      const tag = `${i + 1}`;                 // the number only: at phone width labels of neighbours overlapped; each card below says it
      ctx.font = `600 ${font}px system-ui, sans-serif`;
      const tw = ctx.measureText(tag).width + font * 0.6, th = font * 1.35, ty = y >= th ? y - th : y + h;
      ctx.fillStyle = color(f.label); ctx.fillRect(x - line / 2, ty, tw, th);
      ctx.fillStyle = '#111'; ctx.textBaseline = 'middle'; ctx.fillText(tag, x + font * 0.3, ty + th / 2);
    });
  }

  function draw() {
    if (!photo || !answer) return;
    const canvas = $('picture'), faces = answer.faces || [];
    canvas.hidden = !photo.picture;
    if (!photo.picture) return;
    const room = canvas.parentElement.clientWidth || photo.width;
    const cssW = Math.min(room, photo.width), ratio = Math.min(window.devicePixelRatio || 1, 2);
    canvas.width = Math.round(cssW * ratio); canvas.height = Math.round(canvas.width * photo.height / photo.width);
    canvas.style.width = `${cssW}px`;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(photo.picture, 0, 0, canvas.width, canvas.height);
    drawBoxes(ctx, faces, canvas.width / photo.width, decodeMaps(answer.maps));
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function faceCard(f, i, maps) {
    const li = el('li', 'fer-face'), head = el('h2'), num = el('span', 'num', String(i + 1));
    num.style.background = color(f.label);
    head.append(num, el('span', 'fer-label', f.label), el('span', 'conf', `${Math.round(100 * (f.confidence ?? f.probs[f.label]))} %`));
    const bars = el('div', 'bars');
    for (const [label, p] of Object.entries(f.probs)) {
      const bar = el('div', 'bar'), fill = el('span');
      fill.style.width = `${(100 * p).toFixed(1)}%`; fill.style.background = color(label);
      bar.append(fill);
      bars.append(el('span', 'name', label), bar, el('span', 'pct', `${(100 * p).toFixed(1)} %`));
    }
    li.append(head, bars);
    if (maps) { const c = heatCanvas(maps, i); c.className = 'heatmap'; c.title = 'where the model looked'; li.append(c); }
    return li;
  }

  function show() {
    const faces = answer.faces || [], maps = decodeMaps(answer.maps);
    let text = faces.length ? `${photo.name}: ${faces.length} face${faces.length === 1 ? '' : 's'}`
                            : `${photo.name}: no face found. Faces that are larger and turned to the camera are found best.`;
    if (!photo.picture) text += ' (this browser cannot show this photo\'s format)';
    $('summary').textContent = text;
    $('faces').replaceChildren(...faces.map((f, i) => faceCard(f, i, maps)));
    $('result').hidden = false;
    draw();
    say('');
  }

  // ---- the live camera: only on secure pages (https, or localhost), which is where browsers allow it
  function cameraOffer() {
    const secure = window.isSecureContext, api = navigator.mediaDevices && navigator.mediaDevices.getUserMedia;
    if (secure && api) { $('live').hidden = false; return; }
    const off = $('camera-off');
    off.textContent = !secure ? 'The live camera is off: browsers allow it only on https pages, and this one is plain http. The photo button works.'
                              : 'This browser offers no live camera here. The photo button works.';
    off.hidden = false;
  }

  function video() {
    let v = $('video');
    if (!v) {
      v = document.createElement('video'); v.id = 'video'; v.playsInline = true; v.muted = true;
      const boxes = document.createElement('canvas'); boxes.id = 'video-boxes';
      $('video-stage').append(v, boxes);
    }
    return v;
  }

  function grab(side, quality) {
    const v = video(), scale = Math.min(1, side / Math.max(v.videoWidth, v.videoHeight));
    const c = document.createElement('canvas');
    c.width = Math.round(v.videoWidth * scale); c.height = Math.round(v.videoHeight * scale);
    c.getContext('2d').drawImage(v, 0, 0, c.width, c.height);
    return new Promise((done) => c.toBlob((blob) => done({blob, picture: c, width: c.width, height: c.height}), 'image/jpeg', quality));
  }

  async function startCamera() {
    try { stream = await navigator.mediaDevices.getUserMedia({video: {facingMode: 'user', width: {ideal: 1280}}, audio: false}); }
    catch (e) { say(`the camera did not start (${e.name === 'NotAllowedError' ? 'permission refused' : e.name}): the photo button works`, true); return; }
    const v = video(); v.srcObject = stream; await v.play();
    $('camera').hidden = false; $('live').hidden = true; say('');
    const mine = stream;
    while (stream === mine) {
      const t0 = Date.now();
      try {
        const frame = await grab(LIVE_SIDE, 0.8);
        const body = await ask('predict', {blob: frame.blob, name: 'camera'}, {count: false, live: true}, () => stream === mine);
        drawLive(body.faces || [], frame);
      } catch (e) { if (!(e instanceof Stale)) { fail(e); await sleep(1000); } }
      await sleep(Math.max(0, LIVE_EVERY_MS - (Date.now() - t0)));
    }
  }
  function drawLive(faces, frame) {
    const c = $('video-boxes'), v = video();
    c.width = v.clientWidth; c.height = v.clientHeight;
    const ctx = c.getContext('2d'); ctx.clearRect(0, 0, c.width, c.height);
    drawBoxes(ctx, faces, c.width / frame.width, null);
  }
  function stopCamera() {
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = null; $('camera').hidden = true; $('live').hidden = false;
  }
  async function snap() {
    const frame = await grab(MAX_SIDE, JPEG_QUALITY);
    stopCamera();
    generation++; photo = {blob: frame.blob, name: 'camera.jpg', picture: frame.picture, width: frame.width, height: frame.height};
    classify(true);
  }

  // ---- wiring
  function debounce(fn, ms) { let t; return () => { clearTimeout(t); t = setTimeout(fn, ms); }; }
  function init() {
    const input = $('photo');
    input.addEventListener('change', () => {
      const f = input.files && input.files[0];
      input.value = '';                       // the same file chosen again is a new upload
      if (f) onFile(f);
    });
    document.addEventListener('dragover', (e) => e.preventDefault());
    document.addEventListener('drop', (e) => { e.preventDefault(); const f = e.dataTransfer.files[0]; if (f) onFile(f); });
    $('everyday').addEventListener('change', () => classify(false));
    $('heat').addEventListener('change', () => classify(false));
    $('live').addEventListener('click', startCamera);
    $('stop').addEventListener('click', stopCamera);
    $('snap').addEventListener('click', snap);
    window.addEventListener('resize', debounce(draw, 150));
    cameraOffer();
    // a photo chosen before this script ran (a slow network, a quick hand) fired its 'change' before anyone listened
    const early = input.files && input.files[0];
    if (early) { input.value = ''; onFile(early); }
    document.documentElement.dataset.ready = 'yes';     // usable from here on (the tests and bench/app_load.py wait for it)
  }
  init();
})();
