// The Content-Type each resource must carry (browsers enforce several of them: module scripts,
// wasm streaming compile, stylesheets in standards mode), checked with HEAD requests.
export const checks = [
  ["index.html", "text/html; charset=utf-8"],
  ["style.css", "text/css; charset=utf-8"],
  ["app.js", "text/javascript; charset=utf-8"],
  ["checks.mjs", "text/javascript; charset=utf-8"],
  ["logo.svg", "image/svg+xml"],
  ["pattern.png", "image/png"],
  ["add.wasm", "application/wasm"],
  ["media.bin", "application/octet-stream"],
];

export async function expectType(path, type) {
  // no-store: ask onepoll itself, not the copy the page load left in the HTTP cache.
  const response = await fetch(path, { method: "HEAD", cache: "no-store" });
  const actual = response.headers.get("Content-Type");
  if (!response.ok || actual !== type) throw new Error(`${response.status} ${actual}`);
  return actual;
}
