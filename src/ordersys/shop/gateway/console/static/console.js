// The console's only script: pages with data-refresh fetch their content
// again every so many milliseconds, and forms with data-confirm ask first.
"use strict";

function refresh(main) {
  const every = Number(main.dataset.refresh);
  if (!every) return;
  setTimeout(async () => {
    try {
      const response = await fetch(window.location.href, {
        headers: { "X-Console-Fragment": "1" },
        credentials: "same-origin",
      });
      if (response.ok && !document.querySelector("details[open]")) {
        main.innerHTML = await response.text();
        main.dataset.refreshed = String(Date.now());
      }
    } catch (error) {
      console.warn("console: refresh failed", error);
    }
    refresh(main);
  }, every);
}

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!form.dataset.confirm) return;
  if (!window.confirm(form.dataset.confirm)) {
    event.preventDefault();
    return;
  }
  // The server purges only when told the queue's name again.
  form.elements.confirm.value = form.elements.queue.value;
});

document.addEventListener("DOMContentLoaded", () => {
  const main = document.getElementById("content");
  if (main) refresh(main);
});
