// Lists every resource this page loaded, with its size, using the Resource Timing API.
"use strict";
window.addEventListener("load", () => {
  const list = document.getElementById("resources");
  list.textContent = "";
  for (const entry of performance.getEntriesByType("resource")) {
    const item = document.createElement("li");
    item.className = "ok";
    item.textContent = `${new URL(entry.name).pathname} (${entry.transferSize || entry.encodedBodySize} bytes)`;
    list.appendChild(item);
  }
});
