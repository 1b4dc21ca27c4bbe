// The page checks what served it and reports into its own DOM and title, so a headless
// browser (scripts/browser-check.sh) can tell whether every resource arrived with the right
// type. Loaded as a module: browsers refuse module scripts without a JavaScript MIME type.
import { checks, expectType } from "./checks.mjs";

const results = [];

async function run(name, check) {
  try {
    const detail = await check();
    results.push({ name, ok: true, detail });
  } catch (error) {
    results.push({ name, ok: false, detail: String(error.message || error) });
  }
}

async function main() {
  await run("stylesheet applied", async () => {
    const value = getComputedStyle(document.documentElement).getPropertyValue("--served-by").trim();
    if (value !== "onepoll") throw new Error(`--served-by is "${value}"`);
    return "text/css";
  });
  for (const id of ["logo", "pattern"]) {
    await run(`${id} image decoded`, async () => {
      const image = document.getElementById(id);
      await image.decode();
      return `${image.naturalWidth}x${image.naturalHeight}`;
    });
  }
  await run("wasm compiled while streaming", async () => {
    // instantiateStreaming insists on Content-Type: application/wasm.
    const { instance } = await WebAssembly.instantiateStreaming(fetch("add.wasm"));
    const sum = instance.exports.add(2, 3);
    if (sum !== 5) throw new Error(`add(2, 3) = ${sum}`);
    return "add(2, 3) = 5";
  });
  await run("range request", async () => {
    const response = await fetch("media.bin", { headers: { Range: "bytes=1000-1999" }, cache: "no-store" });
    if (response.status !== 206) throw new Error(`status ${response.status}`);
    const range = response.headers.get("Content-Range");
    if (range !== "bytes 1000-1999/102400") throw new Error(`Content-Range ${range}`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    if (bytes.length !== 1000) throw new Error(`${bytes.length} bytes`);
    bytes.forEach((byte, i) => {
      if (byte !== (1000 + i) % 251) throw new Error(`byte ${1000 + i} is ${byte}`);
    });
    return range;
  });
  await run("compressed on the fly, decoded", async () => {
    // The first response is sent as it is while the server compresses the file in the
    // background; a later one comes in the coding Chromium prefers.
    for (let attempt = 0; attempt < 50; attempt++) {
      const response = await fetch("checks.mjs", { cache: "no-store" });
      const coding = response.headers.get("Content-Encoding");
      const text = await response.text();
      if (!text.startsWith("// The Content-Type each resource") || !text.trimEnd().endsWith("}")) {
        throw new Error(`decoded ${coding || "identity"} text differs`);
      }
      if (coding) return `${coding}, ${text.length} characters`;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error("never compressed");
  });
  for (const [path, type] of checks) {
    await run(`type of ${path}`, () => expectType(path, type));
  }
  await run("protocol of every resource", async () => {
    // Over HTTPS the browser negotiates HTTP/2 (ALPN); over plain HTTP it speaks HTTP/1.1.
    const expected = location.protocol === "https:" ? "h2" : "http/1.1";
    const entries = [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")];
    // A second use of a resource the page already holds (the logo is also its icon) can come
    // from the memory cache: nothing transferred, no protocol.
    const fetched = entries.filter((entry) => !(entry.transferSize === 0 && entry.nextHopProtocol === ""));
    const other = fetched.filter((entry) => entry.nextHopProtocol !== expected);
    if (other.length || fetched.length < 10) {
      const list = other.map((entry) => `${entry.name}: "${entry.nextHopProtocol}" ${entry.transferSize} B`);
      throw new Error(`${fetched.length} fetched; ${list.join(", ")}`);
    }
    return `${expected} for all ${fetched.length} fetched, ${entries.length - fetched.length} from cache`;
  });
  report();
}

function report() {
  const list = document.getElementById("checks");
  list.textContent = "";
  for (const { name, ok, detail } of results) {
    const item = document.createElement("li");
    item.className = ok ? "ok" : "fail";
    item.dataset.check = ok ? "ok" : "fail";
    item.textContent = `${ok ? "ok" : "FAIL"}: ${name} (${detail})`;
    list.appendChild(item);
  }
  const failed = results.filter((result) => !result.ok).length;
  document.body.dataset.checks = failed ? "failed" : "passed";
  document.title = failed ? `onepoll: ${failed} of ${results.length} checks FAILED` : `onepoll: all ${results.length} checks passed`;
}

main();
