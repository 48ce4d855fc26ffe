// The presenter's view (/room): counts per expression of the room's recent uploads, asked every few seconds.
// The server keeps counts only (no photo, no face); this page keeps nothing either.
'use strict';
(() => {
  const EVERY_MS = 2000;
  const COLORS = {anger: '#e63946', disgust: '#6a994e', fear: '#8e6cc4', happiness: '#ffbe0b', sadness: '#3a86ff',
                  surprise: '#ff006e', neutral: '#aaaaaa', contempt: '#fb8500'};
  const $ = (id) => document.getElementById(id);
  let classes = null;
  const rows = {};

  function row(label) {
    if (rows[label]) return rows[label];
    const li = document.createElement('li'), name = document.createElement('span'), bar = document.createElement('div');
    const fill = document.createElement('span'), n = document.createElement('span');
    li.dataset.label = label; name.textContent = label; bar.className = 'bar'; n.className = 'n';
    fill.style.background = COLORS[label] || '#888'; fill.style.width = '0%';
    bar.append(fill); li.append(name, bar, n); $('room-bars').append(li);
    return (rows[label] = {li, fill, n});
  }

  function render(c) {
    const labels = [...(classes || []), ...Object.keys(c.counts).filter((k) => !(classes || []).includes(k))];
    const top = Math.max(1, ...Object.values(c.counts));
    for (const label of labels) {
      const r = row(label), k = c.counts[label] || 0;
      r.n.textContent = String(k); r.fill.style.width = `${(100 * k / top).toFixed(1)}%`;
    }
    const minutes = Math.round(c.window_s / 60);
    $('room-window').textContent = String(minutes);
    $('room-summary').textContent = c.photos
      ? `${c.faces} face${c.faces === 1 ? '' : 's'} in ${c.photos} photo${c.photos === 1 ? '' : 's'}, the last ${minutes} minutes`
      : `No photo in the last ${minutes} minutes yet: open the page and upload one.`;
  }

  async function tick() {
    try {
      if (!classes) {
        const h = await fetch('v1/health', {cache: 'no-store'});
        if (h.ok) classes = (await h.json()).classes;
      }
      const r = await fetch('v1/room', {cache: 'no-store'}), c = await r.json();
      if (!r.ok) { $('room-status').textContent = `⚠ ${c.error}`; return; }
      render(c); $('room-status').textContent = '';
    } catch (e) {
      $('room-status').textContent = 'The server is not answering: the counts come back when it does.';
    } finally { setTimeout(tick, EVERY_MS); }
  }
  tick();
})();
