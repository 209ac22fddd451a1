// Carebridge app service worker: keeps the app shell (no personal data) so the app opens
// without a network. API answers are never cached here; the app keeps what it may keep offline
// (contacts, duties) in IndexedDB and wipes it on sign-out. The server replaces the version
// below with a digest of the embedded files, so a new build replaces the cache.
const VERSION = 'carebridge-app-__VERSION__';
// The server fills in every file of the build (the shell page is kept as '/app/').
const SHELL = ['/app/', ...'__FILES__'.split(' ')];

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches.open(VERSION).then((c) => c.addAll(SHELL.map((u) => new Request(u, { cache: 'reload' })))),
  );
  self.skipWaiting();
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== VERSION).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET') return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin || !url.pathname.startsWith('/app/')) return;
  if (req.mode === 'navigate') {
    // The shell for every page of the app (the callback too): network first, so a sign-in
    // always runs the newest code, the cached shell when offline.
    event.respondWith(
      fetch(req).catch(() => caches.match('/app/').then((r) => r || Response.error())),
    );
    return;
  }
  if (SHELL.includes(url.pathname)) {
    event.respondWith(caches.match(url.pathname).then((r) => r || fetch(req)));
  }
});
